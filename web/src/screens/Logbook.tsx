import { useState, type FormEvent } from "react";
import { api, problemMessage, type Schemas } from "../api/client";
import { Layout } from "../components/Layout";
import { treatmentLabel } from "../lib/chartData";
import { formatGlucose, fromUnit, type GlucoseUnit } from "../lib/glucose";
import { newId, type OutboxEntry } from "../lib/outbox";
import { useSession } from "../lib/session";
import { fromInputValue, localIso, shortTime, toInputValue } from "../lib/time";
import { useResource } from "../lib/useResource";
import { FormError } from "../components/FormError";

type EntryKind = "insulin" | "carbs" | "exercise" | "fingerstick" | "note";

const KINDS: { kind: EntryKind; label: string }[] = [
  { kind: "insulin", label: "Insulin" },
  { kind: "carbs", label: "Carbs" },
  { kind: "exercise", label: "Exercise" },
  { kind: "fingerstick", label: "Fingerstick" },
  { kind: "note", label: "Note" },
];

const DAYS = 7;

/** What a waiting entry will do, in words. */
function pendingText(p: OutboxEntry, unit: GlucoseUnit): string {
  switch (p.kind) {
    case "reading":
      return `Fingerstick ${formatGlucose(Number(p.body.value), unit)} ${unit} · ${shortTime(String(p.body.time))}`;
    case "treatment":
      return `${String(p.body.kind)} ${treatmentLabel(p.body as never)} · ${shortTime(String(p.body.time))}`;
    case "treatment-replace": {
      const t = p.body.treatment as Record<string, unknown>;
      return `Change to ${String(t.kind)} ${treatmentLabel(t as never)} · ${shortTime(String(t.time))}`;
    }
    case "treatment-delete":
      return "Deletion of a saved entry";
  }
}

export default function Logbook() {
  const { outbox, syncNow, pending, unit, profile } = useSession();
  const owner = profile!.id;
  const [kind, setKind] = useState<EntryKind>("carbs");
  const [amount, setAmount] = useState("");
  const [insulinType, setInsulinType] = useState<"bolus" | "basal">("bolus");
  const [intensity, setIntensity] = useState<"low" | "moderate" | "high">("moderate");
  const [text, setText] = useState("");
  const [when, setWhen] = useState(() => toInputValue(new Date()));
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [editing, setEditing] = useState<Schemas["TreatmentOut"] | null>(null);
  const range = { from: new Date(Date.now() - DAYS * 86_400_000).toISOString(), to: new Date(Date.now() + 86_400_000).toISOString() };
  const treatments = useResource(() => api.GET("/api/v1/treatments", { params: { query: { ...range, order: "desc", limit: 500 } } }), [pending.length]);
  // Fingersticks are among the CGM readings (~288 a day): the last two days are read for them.
  const meters = useResource(
    () =>
      api.GET("/api/v1/readings", {
        params: { query: { from: new Date(Date.now() - 2 * 86_400_000).toISOString(), to: range.to, order: "desc", limit: 10000 } },
      }),
    [pending.length],
  );

  const reset = () => {
    setAmount("");
    setText("");
    setWhen(toInputValue(new Date()));
    setEditing(null);
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setSaved(null);
    const at = fromInputValue(when);
    if (!at) return setError("Enter when it happened.");
    const value = Number(amount.replace(",", "."));
    const needsAmount = kind !== "note";
    if (needsAmount && (!amount || !Number.isFinite(value) || value <= 0)) return setError("Enter an amount greater than zero.");
    if (kind === "note" && !text.trim()) return setError("Write the note.");
    const time = localIso(at);
    let entry;
    if (kind === "fingerstick") {
      const body = { time, value: Math.round(fromUnit(value, unit) * 10) / 10, unit: "mg/dL", kind: "meter", device: "GlucoSync web" };
      entry = await outbox.add(owner, "reading", body);
    } else {
      const body: Record<string, unknown> = { time, kind };
      if (kind === "insulin") Object.assign(body, { units: value, insulin_type: insulinType });
      if (kind === "carbs") body.grams = value;
      if (kind === "exercise") Object.assign(body, { minutes: value, intensity });
      if (text.trim()) body.text = text.trim();
      entry = editing
        ? await outbox.add(owner, "treatment-replace", { target: editing.id, treatment: body })
        : await outbox.add(owner, "treatment", body, newId());
    }
    reset();
    await syncNow();
    // Say what really happened to it: delivered, refused, or waiting for the network.
    const left = (await outbox.list(owner)).find((e) => e.id === entry.id);
    if (!left) setSaved("Saved.");
    else if (left.rejected) setError(`The server refused this entry: ${left.rejected}`);
    else setSaved("Saved on this device; it will sync when you are back online.");
  };

  const remove = async (t: Schemas["TreatmentOut"]) => {
    if (!confirm(`Delete ${t.kind} ${treatmentLabel(t)} at ${shortTime(t.time)}?`)) return;
    setError(null);
    setSaved(null);
    const entry = await outbox.add(owner, "treatment-delete", { target: t.id });
    await syncNow();
    const left = (await outbox.list(owner)).find((e) => e.id === entry.id);
    if (left?.rejected) setError(`The server refused: ${left.rejected}`);
    else if (left) setSaved("Deleted on this device; the server hears of it when you are back online.");
    treatments.reload();
  };

  const removeMeter = async (r: Schemas["ReadingOut"]) => {
    if (!confirm(`Delete the fingerstick of ${formatGlucose(r.value, unit)} ${unit} at ${shortTime(r.time)}?`)) return;
    const res = await api.DELETE("/api/v1/readings/{id}", { params: { path: { id: r.id } } }).catch(() => null);
    if (!res?.response.ok) setError(res ? problemMessage(res.error) : "You are offline: deleting needs a connection.");
    meters.reload();
  };

  const edit = (t: Schemas["TreatmentOut"]) => {
    setEditing(t);
    setKind(t.kind as EntryKind);
    setAmount(String(t.units ?? t.grams ?? t.minutes ?? ""));
    if (t.insulin_type) setInsulinType(t.insulin_type);
    if (t.intensity) setIntensity(t.intensity);
    setText(t.text ?? "");
    setWhen(toInputValue(new Date(t.time)));
    // After the form has re-rendered for the entry's kind.
    requestAnimationFrame(() => (document.getElementById("amount") ?? document.getElementById("note-text"))?.focus());
  };

  const amountLabel = { insulin: "Units", carbs: "Grams of carbohydrate", exercise: "Minutes", fingerstick: `Glucose (${unit})`, note: "" }[kind];

  return (
    <Layout title="Logbook">
      <section className="card" aria-labelledby="entry-title">
        <h2 id="entry-title">{editing ? "Edit entry" : "New entry"}</h2>
        <form onSubmit={(e) => void submit(e)} className="entry-form" noValidate>
          <fieldset className="segmented" disabled={!!editing}>
            <legend>What</legend>
            {KINDS.map((k) => (
              <label key={k.kind} className={kind === k.kind ? "checked" : ""}>
                <input type="radio" name="kind" value={k.kind} checked={kind === k.kind} onChange={() => setKind(k.kind)} />
                {k.label}
              </label>
            ))}
          </fieldset>
          {kind !== "note" && (
            <div>
              <label htmlFor="amount">{amountLabel}</label>
              <input id="amount" inputMode="decimal" autoComplete="off" value={amount} onChange={(e) => setAmount(e.target.value)} />
            </div>
          )}
          {kind === "insulin" && (
            <div>
              <label htmlFor="insulin-type">Type</label>
              <select id="insulin-type" value={insulinType} onChange={(e) => setInsulinType(e.target.value as "bolus" | "basal")}>
                <option value="bolus">Bolus (rapid-acting)</option>
                <option value="basal">Basal (long-acting)</option>
              </select>
            </div>
          )}
          {kind === "exercise" && (
            <div>
              <label htmlFor="intensity">Intensity</label>
              <select id="intensity" value={intensity} onChange={(e) => setIntensity(e.target.value as "low" | "moderate" | "high")}>
                <option value="low">Low</option>
                <option value="moderate">Moderate</option>
                <option value="high">High</option>
              </select>
            </div>
          )}
          {kind !== "fingerstick" && (
            <div>
              <label htmlFor="note-text">{kind === "note" ? "Note" : "Note (optional)"}</label>
              <input id="note-text" value={text} maxLength={1000} onChange={(e) => setText(e.target.value)} />
            </div>
          )}
          <div>
            <label htmlFor="when">When</label>
            <input id="when" type="datetime-local" value={when} onChange={(e) => setWhen(e.target.value)} />
          </div>
          <FormError message={error} />
          {saved && (
            <p className="form-ok" role="status">
              {saved}
            </p>
          )}
          <div className="actions">
            <button type="submit" className="primary">
              {editing ? "Save changes" : "Add entry"}
            </button>
            {editing && (
              <button type="button" onClick={reset}>
                Cancel
              </button>
            )}
          </div>
        </form>
      </section>

      {pending.length > 0 && (
        <section className="card" aria-labelledby="pending-title">
          <h2 id="pending-title">Waiting to sync</h2>
          <ul className="entries" data-testid="pending-list">
            {pending.map((p) => (
              <li key={p.id}>
                <span>{pendingText(p, unit)}</span>{" "}
                {p.rejected ? (
                  <>
                    <span className="tag tag-error">Refused: {p.rejected}</span>
                    <button type="button" onClick={() => void outbox.remove(p.id)}>
                      Discard
                    </button>
                  </>
                ) : (
                  <span className="tag">Pending</span>
                )}
              </li>
            ))}
          </ul>
        </section>
      )}

      <section className="card" aria-labelledby="recent-title">
        <h2 id="recent-title">Last {DAYS} days</h2>
        {treatments.error && <p className="form-error">{treatments.error}</p>}
        <ul className="entries" data-testid="treatment-list">
          {(treatments.data?.items ?? [])
            .filter((t) => !pending.some((p) => p.kind === "treatment-delete" && p.body.target === t.id && !p.rejected))
            .map((t) => (
            <li key={t.id}>
              <span className="entry-kind">{t.kind.replace("_", " ")}</span> <strong>{treatmentLabel(t)}</strong>
              {t.text && <span> · {t.text}</span>} <span className="muted">{shortTime(t.time)}</span>
              {t.kind !== "basal_rate" && (
                <span className="entry-actions">
                  <button type="button" onClick={() => edit(t)} aria-label={`Edit ${t.kind} at ${shortTime(t.time)}`}>
                    Edit
                  </button>
                  <button type="button" onClick={() => void remove(t)} aria-label={`Delete ${t.kind} at ${shortTime(t.time)}`}>
                    Delete
                  </button>
                </span>
              )}
            </li>
          ))}
          {(meters.data?.items ?? [])
            .filter((r) => r.kind === "meter")
            .map((r) => (
              <li key={`m${r.id}`}>
                <span className="entry-kind">fingerstick</span>{" "}
                <strong>
                  {formatGlucose(r.value, unit)} {unit}
                </strong>{" "}
                <span className="muted">{shortTime(r.time)}</span>
                <span className="entry-actions">
                  <button type="button" onClick={() => void removeMeter(r)} aria-label={`Delete fingerstick at ${shortTime(r.time)}`}>
                    Delete
                  </button>
                </span>
              </li>
            ))}
          {treatments.data && treatments.data.items.length === 0 && <li className="muted">Nothing logged in the last {DAYS} days.</li>}
        </ul>
      </section>
    </Layout>
  );
}
