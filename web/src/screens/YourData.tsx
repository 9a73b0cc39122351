/**
 * The person's data, theirs to take and bring (docs/data-ownership.md): downloads of
 * everything (JSON, CSV, FHIR), imports from Dexcom Clarity, LibreView, Nightscout (a file
 * or the site itself) and GlucoSync, and deleting the account.
 */
import { useState, type FormEvent } from "react";
import { api, csrfToken, problemMessage, type Schemas } from "../api/client";
import { FormError } from "../components/FormError";
import { useSession } from "../lib/session";
import { longDate } from "../lib/time";

type Report = Schemas["ImportReport"];

const FORMATS = [
  { value: "clarity", label: "Dexcom Clarity (CSV export)" },
  { value: "libreview", label: "LibreView (CSV export)" },
  { value: "nightscout", label: "Nightscout (entries or treatments JSON)" },
  { value: "glucosync", label: "GlucoSync export (JSON)" },
];

const DOWNLOADS = [
  { href: "/api/v1/export", label: "Everything (GlucoSync JSON, can be imported again)" },
  { href: "/api/v1/export/readings.csv", label: "Readings (CSV)" },
  { href: "/api/v1/export/treatments.csv", label: "Treatments (CSV)" },
  { href: "/api/v1/export/access-log.csv", label: "Who looked at my data (CSV)" },
  { href: "/api/v1/export/fhir", label: "Last 90 days for a clinic (HL7 FHIR)" },
];

export function YourData() {
  return (
    <>
      <Downloads />
      <ImportFile />
      <ImportNightscout />
      <DeleteAccount />
    </>
  );
}

function Downloads() {
  return (
    <section className="card" aria-labelledby="export-title">
      <h2 id="export-title">Download my data</h2>
      <p className="hint">Your data is yours: take all of it, whenever you like.</p>
      <ul className="entries" data-testid="downloads">
        {DOWNLOADS.map((d) => (
          <li key={d.href}>
            <a href={d.href} download>
              {d.label}
            </a>
          </li>
        ))}
      </ul>
    </section>
  );
}

/** What an import did, in a sentence and the reasons rows were skipped. */
function ImportSummary({ report }: { report: Report }) {
  const reasons = Object.entries(report.skipped_by_reason);
  return (
    <div className="report" role="status" data-testid="import-report">
      <p>
        Imported {report.readings.imported} readings and {report.treatments.imported} treatments
        {report.readings.duplicates + report.treatments.duplicates > 0 &&
          `; ${report.readings.duplicates + report.treatments.duplicates} were already here`}
        {report.readings.already_from_another_device > 0 &&
          `; ${report.readings.already_from_another_device} readings were already here from another device`}
        .
      </p>
      {reasons.length > 0 && (
        <details>
          <summary>{report.skipped_total} rows not imported</summary>
          <ul>
            {reasons.map(([reason, count]) => (
              <li key={reason}>
                {count} × {reason}
              </li>
            ))}
          </ul>
        </details>
      )}
    </div>
  );
}

function ImportFile() {
  const { profile } = useSession();
  const [format, setFormat] = useState("clarity");
  const [file, setFile] = useState<File | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [report, setReport] = useState<Report | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!file) return;
    setBusy(true);
    setError(null);
    setReport(null);
    try {
      const headers: Record<string, string> = { "Content-Type": "application/octet-stream" };
      const csrf = csrfToken();
      if (csrf) headers["X-CSRF-Token"] = csrf;
      const r = await fetch(`/api/v1/import?format=${encodeURIComponent(format)}`, {
        method: "POST",
        body: file,
        headers,
        credentials: "same-origin",
      });
      const body = await r.json().catch(() => null);
      if (r.ok) setReport(body as Report);
      else setError(problemMessage(body));
    } catch {
      setError("The server cannot be reached. Check your connection.");
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="card" aria-labelledby="import-title">
      <h2 id="import-title">Import</h2>
      <p className="hint">
        Bring your history from another system. Times in Clarity and LibreView files are read in your time zone ({profile?.settings.time_zone ?? "UTC"}).
        Importing the same file again adds nothing.
      </p>
      <form onSubmit={submit}>
        <label htmlFor="import-format">Source</label>
        <select id="import-format" value={format} onChange={(e) => setFormat(e.target.value)}>
          {FORMATS.map((f) => (
            <option key={f.value} value={f.value}>
              {f.label}
            </option>
          ))}
        </select>
        <label htmlFor="import-file">File</label>
        <input id="import-file" type="file" accept=".csv,.json,.txt" required onChange={(e) => setFile(e.target.files?.[0] ?? null)} />
        <FormError message={error} />
        <button type="submit" disabled={busy || !file}>
          {busy ? "Importing…" : "Import"}
        </button>
      </form>
      {report && <ImportSummary report={report} />}
    </section>
  );
}

function ImportNightscout() {
  const [url, setUrl] = useState("");
  const [token, setToken] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [report, setReport] = useState<Report | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setReport(null);
    try {
      // A token looks like name-0123456789abcdef; anything else is taken as the API secret.
      const isToken = /^[a-z0-9_]+-[0-9a-f]{16}$/i.test(token);
      const r = await api.POST("/api/v1/import/nightscout", {
        body: isToken ? { url, token } : { url, api_secret: token },
      });
      if (r.data) setReport(r.data);
      else setError(problemMessage(r.error));
    } catch {
      setError("The server cannot be reached. Check your connection.");
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="card" aria-labelledby="ns-import-title">
      <h2 id="ns-import-title">Import from my Nightscout site</h2>
      <p className="hint">All your entries and treatments, read from the site with a token that can read (or the API secret).</p>
      <form onSubmit={submit}>
        <label htmlFor="ns-import-url">Nightscout URL</label>
        <input id="ns-import-url" type="url" required placeholder="https://my-site.example.org" value={url} onChange={(e) => setUrl(e.target.value)} />
        <label htmlFor="ns-import-token">Token or API secret</label>
        <input id="ns-import-token" type="password" required value={token} onChange={(e) => setToken(e.target.value)} />
        <FormError message={error} />
        <button type="submit" disabled={busy}>
          {busy ? "Importing… (a long history takes a while)" : "Import from Nightscout"}
        </button>
      </form>
      {report && <ImportSummary report={report} />}
    </section>
  );
}

function DeleteAccount() {
  const { profile, setProfile } = useSession();
  const [confirmEmail, setConfirmEmail] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await api.DELETE("/api/v1/me", { body: { confirm_email: confirmEmail } });
      if (r.data) {
        // Every session ended with it, this one too.
        setProfile(null);
        location.assign("/app/");
      } else setError(problemMessage(r.error));
    } catch {
      setError("The server cannot be reached. Check your connection.");
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="card danger" aria-labelledby="delete-title">
      <h2 id="delete-title">Delete my account</h2>
      <p>
        Everything goes: readings, treatments, reports, shares, tokens, the Nightscout site. At once, you are logged out everywhere, your uploaders stop
        and the people following you no longer see anything. Your data is deleted after a few days; until then, logging in lets you keep your account.
        Download your data first if you want it.
      </p>
      <form onSubmit={submit}>
        <label htmlFor="delete-confirm">Type your email address ({profile?.email}) to confirm</label>
        <input id="delete-confirm" type="email" autoComplete="off" required value={confirmEmail} onChange={(e) => setConfirmEmail(e.target.value)} />
        <FormError message={error} />
        <button type="submit" className="danger" disabled={busy}>
          Delete my account
        </button>
      </form>
    </section>
  );
}

/** Shown on every screen while the account waits for deletion, with the way back. */
export function DeletionBanner() {
  const { profile, setProfile } = useSession();
  const [error, setError] = useState<string | null>(null);
  if (!profile?.deletion_due) return null;
  const keep = async () => {
    const r = await api.POST("/api/v1/me/keep").catch(() => null);
    if (r?.data) setProfile(r.data);
    else setError(r ? problemMessage(r.error) : "You are offline: this needs a connection.");
  };
  return (
    <div className="banner banner-warn" role="alert" data-testid="deletion-banner">
      Your account and all its data will be deleted on {longDate(profile.deletion_due)}.{" "}
      <button type="button" className="link-button" onClick={() => void keep()}>
        Keep my account
      </button>
      {error && <span> {error}</span>}
    </div>
  );
}
