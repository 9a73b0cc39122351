import { useState, type FormEvent } from "react";
import { api, problemMessage, type Schemas } from "../api/client";
import { Layout } from "../components/Layout";
import { changedMgdl, fromUnit, toUnit, type GlucoseUnit } from "../lib/glucose";
import { useSession } from "../lib/session";
import { useSsoStatus } from "../lib/sso";
import { shortTime } from "../lib/time";
import { useResource } from "../lib/useResource";
import { FormError } from "../components/FormError";
import { YourData } from "./YourData";

/** The browser's list of zones, plus UTC and the person's current one (some browsers list neither). */
function timeZones(current: string): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (k: string) => string[] };
  const zones = new Set(intl.supportedValuesOf?.("timeZone") ?? []);
  zones.add("UTC");
  zones.add(current);
  return [...zones].sort();
}

export default function Settings() {
  return (
    <Layout title="Settings">
      <GeneralSettings />
      <SingleSignOn />
      <AiConsent />
      <Uploaders />
      <NightscoutSite />
      <YourData />
    </Layout>
  );
}

function GeneralSettings() {
  const { profile, setProfile } = useSession();
  const s = profile!.settings;
  const [unit, setUnit] = useState<GlucoseUnit>((s.display_unit as GlucoseUnit) ?? "mg/dL");
  const [zone, setZone] = useState(s.time_zone ?? "UTC");
  const [low, setLow] = useState(String(toUnit(s.target_low_mgdl ?? 70, unit)));
  const [high, setHigh] = useState(String(toUnit(s.target_high_mgdl ?? 180, unit)));
  const [name, setName] = useState(profile!.display_name ?? "");
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);

  const changeUnit = (u: GlucoseUnit) => {
    // Keep the targets' meaning when the unit changes.
    setLow(String(toUnit(fromUnit(Number(low), unit), u)));
    setHigh(String(toUnit(fromUnit(Number(high), unit), u)));
    setUnit(u);
  };

  const save = async (e: FormEvent) => {
    e.preventDefault();
    setMessage(null);
    try {
      // Targets only when changed: a value shown rounded and sent back would drift.
      const changed = (typed: string, stored: number) => changedMgdl(typed, stored, unit);
      const settings = await api.PATCH("/api/v1/me/settings", {
        body: {
          display_unit: unit,
          time_zone: zone,
          target_low_mgdl: changed(low, s.target_low_mgdl ?? 70),
          target_high_mgdl: changed(high, s.target_high_mgdl ?? 180),
        },
      });
      if (!settings.response.ok || !settings.data) return setMessage({ ok: false, text: problemMessage(settings.error) });
      const me = await api.PATCH("/api/v1/me", { body: { display_name: name.trim() || null } });
      if (!me.response.ok || !me.data) return setMessage({ ok: false, text: problemMessage(me.error) });
      setProfile({ ...me.data, settings: settings.data });
      setMessage({ ok: true, text: "Settings saved." });
    } catch {
      setMessage({ ok: false, text: "You are offline: settings need a connection." });
    }
  };

  return (
    <section className="card" aria-labelledby="general-title">
      <h2 id="general-title">You</h2>
      <form onSubmit={(e) => void save(e)} className="settings-form">
        <label htmlFor="display-name">Display name (shown to the people you share with)</label>
        <input id="display-name" value={name} maxLength={100} onChange={(e) => setName(e.target.value)} />
        <fieldset className="segmented">
          <legend>Glucose unit</legend>
          {(["mg/dL", "mmol/L"] as const).map((u) => (
            <label key={u} className={unit === u ? "checked" : ""}>
              <input type="radio" name="unit" value={u} checked={unit === u} onChange={() => changeUnit(u)} /> {u}
            </label>
          ))}
        </fieldset>
        <label htmlFor="zone">Time zone (where “today” and “night” are in reports)</label>
        <select id="zone" value={zone} onChange={(e) => setZone(e.target.value)}>
          {timeZones(s.time_zone ?? "UTC").map((z) => (
            <option key={z} value={z}>
              {z}
            </option>
          ))}
        </select>
        <fieldset>
          <legend>Target range ({unit})</legend>
          <div className="row">
            <div>
              <label htmlFor="target-low">From</label>
              <input id="target-low" inputMode="decimal" value={low} onChange={(e) => setLow(e.target.value)} />
            </div>
            <div>
              <label htmlFor="target-high">To</label>
              <input id="target-high" inputMode="decimal" value={high} onChange={(e) => setHigh(e.target.value)} />
            </div>
          </div>
          <p className="hint">The consensus range is 70–180 mg/dL (3.9–10.0 mmol/L).</p>
        </fieldset>
        {message && (
          <p className={message.ok ? "form-ok" : "form-error"} role={message.ok ? "status" : "alert"}>
            {message.text}
          </p>
        )}
        <button type="submit" className="primary">
          Save settings
        </button>
      </form>
    </section>
  );
}

const SCOPES: { scope: Schemas["Scope"]; label: string }[] = [
  { scope: "readings:write", label: "Upload readings" },
  { scope: "treatments:write", label: "Upload treatments" },
  { scope: "read", label: "Read my data" },
];

function Uploaders() {
  const tokens = useResource(() => api.GET("/api/v1/tokens"), []);
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<Schemas["Scope"][]>(["readings:write", "treatments:write"]);
  const [created, setCreated] = useState<Schemas["CreatedToken"] | null>(null);
  const [error, setError] = useState<string | null>(null);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const r = await api.POST("/api/v1/tokens", { body: { name: name.trim(), scopes } }).catch(() => null);
    if (!r) return setError("You are offline: creating a token needs a connection.");
    if (!r.response.ok || !r.data) return setError(problemMessage(r.error));
    setCreated(r.data);
    setName("");
    tokens.reload();
  };
  const revoke = async (t: Schemas["TokenInfo"]) => {
    if (!confirm(`Revoke “${t.name}”? Uploaders using it stop working at once.`)) return;
    await api.DELETE("/api/v1/tokens/{id}", { params: { path: { id: t.id } } }).catch(() => null);
    tokens.reload();
  };
  const toggle = (s: Schemas["Scope"]) => setScopes((old) => (old.includes(s) ? old.filter((x) => x !== s) : [...old, s]));

  return (
    <section className="card" aria-labelledby="uploaders-title">
      <h2 id="uploaders-title">Uploaders and API tokens</h2>
      <p className="hint">
        An uploader (a phone app reading your sensor, a script) sends readings with a token of its own. Give each one its own token, so you can
        revoke it alone.
      </p>
      <form onSubmit={(e) => void create(e)} className="settings-form">
        <label htmlFor="token-name">Name</label>
        <input id="token-name" required maxLength={100} placeholder="e.g. Phone uploader" value={name} onChange={(e) => setName(e.target.value)} />
        <fieldset>
          <legend>It may</legend>
          {SCOPES.map((s) => (
            <label key={s.scope} className="check">
              <input type="checkbox" checked={scopes.includes(s.scope)} onChange={() => toggle(s.scope)} /> {s.label}
            </label>
          ))}
        </fieldset>
        <FormError message={error} />
        <button type="submit" className="primary" disabled={!name.trim() || scopes.length === 0}>
          Create token
        </button>
      </form>
      {created && (
        <div className="secret" data-testid="created-token">
          <p role="status">
            <strong>Token “{created.name}” created. Copy it now:</strong> it is shown only once.
          </p>
          <CopyField id="uploader-url" label="Server URL" value={`${location.origin}/api/v1`} />
          <CopyField id="uploader-token" label="Token" value={created.token} testId="token-value" />
          <p className="hint">
            Uploaders send <code>POST /api/v1/readings</code> with the header <code>Authorization: Bearer &lt;token&gt;</code>.
          </p>
        </div>
      )}
      <ul className="entries" data-testid="token-list">
        {(tokens.data ?? []).map((t) => (
          <li key={t.id}>
            <strong>{t.name}</strong> <span className="muted">{t.scopes.join(", ")}</span>{" "}
            <span className="muted">{t.last_used_at ? `last used ${shortTime(t.last_used_at)}` : "never used"}</span>
            <span className="entry-actions">
              <button type="button" onClick={() => void revoke(t)} aria-label={`Revoke ${t.name}`}>
                Revoke
              </button>
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}

/** The person's Nightscout-compatible site: what xDrip+, AndroidAPS, Loop and follower apps use. */
function NightscoutSite() {
  const site = useResource(() => api.GET("/api/v1/nightscout"), []);
  const [error, setError] = useState<string | null>(null);
  const [data, setData] = useState<Schemas["NightscoutSiteInfo"] | null>(null);
  const shown = data ?? site.data;
  if (!shown) return null;
  const url = `${location.origin}${shown.base_url}`;
  const update = async (call: () => Promise<{ data?: Schemas["NightscoutSiteInfo"]; error?: unknown }>) => {
    setError(null);
    const r = await call().catch(() => null);
    if (!r) return setError("You are offline: this needs a connection.");
    if (!r.data) return setError(problemMessage(r.error as never));
    setData(r.data);
  };
  const rotate = () => {
    if (!confirm("Replace the API secret? Every app using the old one stops uploading until you enter the new one.")) return;
    void update(() => api.POST("/api/v1/nightscout/secret"));
  };
  return (
    <section className="card" aria-labelledby="nightscout-title">
      <h2 id="nightscout-title">Nightscout apps</h2>
      <p className="hint">
        Apps made for Nightscout (xDrip+, AndroidAPS, Loop, Trio, nightscout-connect, Nightguard, Home Assistant) work with GlucoSync: enter this
        address as the Nightscout URL and this API secret. Followers can use a token with “Read my data” instead of the secret.
      </p>
      <CopyField id="nightscout-url" label="Nightscout URL" value={url} testId="nightscout-url" />
      <CopyField id="nightscout-secret" label="API secret" value={shown.api_secret} testId="nightscout-secret" />
      <label className="check">
        <input
          type="checkbox"
          checked={shown.public_read}
          onChange={(e) => {
            const public_read = e.target.checked;
            void update(() => api.PUT("/api/v1/nightscout", { body: { public_read } }));
          }}
        />{" "}
        Public: anyone who knows the address sees my glucose (off is safer)
      </label>
      <FormError message={error} />
      <button type="button" onClick={rotate}>
        Replace API secret
      </button>
    </section>
  );
}

/** A read-only value with a Copy button (a token to paste into an uploader app). */
function CopyField({ id, label, value, testId }: { id: string; label: string; value: string; testId?: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <>
      <label htmlFor={id}>{label}</label>
      <div className="copy-field">
        <input id={id} readOnly value={value} onFocus={(e) => e.target.select()} data-testid={testId} />
        <button
          type="button"
          onClick={() =>
            void navigator.clipboard
              ?.writeText(value)
              .then(() => setCopied(true))
              .catch(() => setCopied(false))
          }
          aria-label={`Copy ${label.toLowerCase()}`}
        >
          {copied ? "Copied" : "Copy"}
        </button>
      </div>
    </>
  );
}

/** Links the organisation's single sign-on account to this one (needs this account's password). */
function SingleSignOn() {
  const sso = useSsoStatus();
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  if (!sso?.enabled) return null;
  const link = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await api.POST("/api/v1/auth/oidc/link", { body: { password } });
      if (r.data) location.assign(r.data.authorization_url);
      else setError(problemMessage(r.error));
    } catch {
      setError("The server cannot be reached. Check your connection.");
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="card" aria-labelledby="sso-title">
      <h2 id="sso-title">Single sign-on</h2>
      <p>Log in with your organisation's account too. Confirm with this account's password; you then log in at your organisation and come back here.</p>
      <form onSubmit={link}>
        <label htmlFor="sso-password">Password of this account</label>
        <input id="sso-password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
        <FormError message={error} />
        <button type="submit" disabled={busy}>
          {busy ? "Opening…" : "Link single sign-on"}
        </button>
      </form>
    </section>
  );
}

/** The consent to AI summaries (offered only where the installation configured a service). */
function AiConsent() {
  const ai = useResource(() => api.GET("/api/v1/insights/ai"), []);
  const { profile, setProfile } = useSession();
  const [error, setError] = useState<string | null>(null);
  if (!ai.data?.available || !profile) return null;
  const toggle = async (on: boolean) => {
    setError(null);
    const r = await api.PATCH("/api/v1/me/settings", { body: { ai_insights: on } });
    if (!r.data) return setError(problemMessage(r.error));
    setProfile({ ...profile, settings: r.data });
    ai.reload();
  };
  return (
    <section className="card" aria-labelledby="ai-consent-title">
      <h2 id="ai-consent-title">AI summaries</h2>
      <p>Figures of your last weeks (never your name, email, notes or single readings) are sent to the AI service your administrator chose when you ask for a summary or ask a question.</p>
      <label className="check">
        <input type="checkbox" checked={ai.data.opted_in} onChange={(e) => void toggle(e.target.checked)} /> Use AI summaries
      </label>
      <FormError message={error} />
    </section>
  );
}
