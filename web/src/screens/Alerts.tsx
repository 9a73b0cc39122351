import { useEffect, useRef, useState, type FormEvent } from "react";
import { api, problemMessage, type Schemas } from "../api/client";
import { Layout } from "../components/Layout";
import { followedName, useFollowed } from "../lib/following";
import { changedMgdl, formatGlucose, toUnit } from "../lib/glucose";
import { disablePush, enablePush, pushStatus, type PushStatus } from "../lib/push";
import { useRoute } from "../lib/router";
import { useSession } from "../lib/session";
import { shortTime } from "../lib/time";
import { usePagedLog, useResource } from "../lib/useResource";
import { FormError } from "../components/FormError";

const KIND_NAMES: Record<string, string> = {
  urgent_low: "Urgent low",
  low: "Low",
  high: "High",
  rapid_fall: "Falling fast",
  rapid_rise: "Rising fast",
  predicted_low: "Low predicted",
  stale_data: "No data",
  urgent_stale_data: "No data for long",
};

export default function Alerts() {
  const { live, profile } = useSession();
  const { search } = useRoute();
  const person = search.get("person") ? Number(search.get("person")) : undefined;
  const alerts = useResource(() => api.GET("/api/v1/alerts", { params: { query: { person } } }), [person]);
  const history = usePagedLog((cursor) => api.GET("/api/v1/alerts/deliveries", { params: { query: { limit: 50, cursor } } }), []);
  // The newest reloads (this screen's person may change while subscribed).
  const reloads = useRef({ alerts, history });
  reloads.current = { alerts, history };
  useEffect(
    () =>
      live.onEvent((e) => {
        if (e.type === "alert" || e.type === "reconnected") {
          reloads.current.alerts.reload();
          reloads.current.history.reload();
        }
      }),
    [live],
  );
  const list = alerts.data?.alerts ?? [];
  const active = list.filter((a) => a.state !== "resolved");
  const whose = useFollowed(person);
  return (
    <Layout title={person ? `Alerts of ${whose ? followedName(whose) : `person ${person}`}` : "Alerts"}>
      <section className="card" aria-labelledby="active-title">
        <h2 id="active-title">Active now</h2>
        {alerts.error && <p className="form-error">{alerts.error}</p>}
        {active.length === 0 && alerts.data && <p data-testid="no-alerts">No active alerts.</p>}
        <ul className="alert-list" data-testid="active-alerts">
          {active.map((a) => (
            <ActiveAlert key={a.kind} alert={a} person={person} onChange={alerts.reload} />
          ))}
        </ul>
      </section>
      {!person && <AlertSettings />}
      {!person && profile && (
        <section className="card" aria-labelledby="history-title">
          <h2 id="history-title">Notification history</h2>
          <table className="metrics">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Alert</th>
                <th scope="col">To</th>
                <th scope="col">Outcome</th>
              </tr>
            </thead>
            <tbody>
              {history.items.map((d, i) => (
                <tr key={i}>
                  <td>{shortTime(d.created_at)}</td>
                  <td>{deliveryText(d.message)}</td>
                  <td>
                    {d.recipient_id === profile.id ? "you" : "caregiver"} · {d.channel}
                  </td>
                  <td>{d.status}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {history.data?.items.length === 0 && <p className="muted">No notifications sent yet.</p>}
          {history.hasMore && (
            <button type="button" onClick={() => void history.more()} disabled={history.loadingMore}>
              Show older notifications
            </button>
          )}
        </section>
      )}
    </Layout>
  );
}

/** A delivery's message is what the device was sent: `{title, body, reason, …}`. */
function deliveryText(message: unknown): string {
  const m = (message ?? {}) as { title?: string; body?: string; reason?: string };
  return [m.title, m.body, m.reason && m.reason !== "raised" ? `(${m.reason})` : ""].filter(Boolean).join(" · ");
}

function ActiveAlert({ alert, person, onChange }: { alert: Schemas["AlertOut"]; person?: number; onChange: () => void }) {
  const [minutes, setMinutes] = useState(30);
  const [error, setError] = useState<string | null>(null);
  const act = async (action: "acknowledge" | "snooze") => {
    setError(null);
    const params = { path: { kind: alert.kind }, query: { person } };
    const r =
      action === "acknowledge"
        ? await api.POST("/api/v1/alerts/{kind}/acknowledge", { params }).catch(() => null)
        : await api.POST("/api/v1/alerts/{kind}/snooze", { params, body: { minutes } }).catch(() => null);
    if (!r) setError("You are offline: acknowledging needs a connection.");
    else if (!r.response.ok) setError(problemMessage(r.error));
    onChange();
  };
  return (
    <li className={`alert-item${alert.urgent ? " urgent" : ""}`} data-testid={`alert-${alert.kind}`}>
      <div>
        <strong>
          {alert.urgent && !/^urgent/i.test(alert.title) ? "Urgent: " : ""}
          {alert.title}
        </strong>
        <p className="muted">
          Since {shortTime(alert.raised_at)}
          {alert.state === "active" ? "" : ` · ${alert.state}`}
          {alert.state === "snoozed" && alert.state_at ? ` until ${shortTime(alert.state_at)}` : ""}
        </p>
      </div>
      {alert.state === "active" && (
        <div className="actions">
          <button type="button" className="primary" onClick={() => void act("acknowledge")}>
            Acknowledge
          </button>
          <label className="inline">
            <span className="visually-hidden">Snooze for</span>
            <select value={minutes} onChange={(e) => setMinutes(Number(e.target.value))} aria-label="Snooze for">
              {[15, 30, 60, 120].map((m) => (
                <option key={m} value={m}>
                  {m} min
                </option>
              ))}
            </select>
          </label>
          <button type="button" onClick={() => void act("snooze")}>
            Snooze
          </button>
        </div>
      )}
      <FormError message={error} />
    </li>
  );
}

function AlertSettings() {
  const { profile, setProfile, unit } = useSession();
  const s = profile!.settings;
  const prefs = s.alerts!;
  const [urgentLow, setUrgentLow] = useState(String(toUnit(s.urgent_low_mgdl ?? 55, unit)));
  const [low, setLow] = useState(String(toUnit(s.low_threshold_mgdl ?? 70, unit)));
  const [high, setHigh] = useState(String(toUnit(s.high_threshold_mgdl ?? 180, unit)));
  const [quiet, setQuiet] = useState(!!prefs.quiet_hours);
  const [quietStart, setQuietStart] = useState(prefs.quiet_hours?.start.slice(0, 5) ?? "22:00");
  const [quietEnd, setQuietEnd] = useState(prefs.quiet_hours?.end.slice(0, 5) ?? "07:00");
  const [disabled, setDisabled] = useState<string[]>(prefs.disabled ?? []);
  const [predicted, setPredicted] = useState(prefs.predicted_low_minutes ?? 30);
  const [email, setEmail] = useState(prefs.email ?? false);
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const [push, setPush] = useState<PushStatus>("unsupported");
  useEffect(() => void pushStatus().then(setPush), []);

  const save = async (e: FormEvent) => {
    e.preventDefault();
    // Only what the person changed: a value shown rounded in mmol/L and sent back would drift.
    const changed = (typed: string, stored: number) => changedMgdl(typed, stored, unit);
    const body: Schemas["SettingsUpdate"] = {
      urgent_low_mgdl: changed(urgentLow, s.urgent_low_mgdl ?? 55),
      low_threshold_mgdl: changed(low, s.low_threshold_mgdl ?? 70),
      high_threshold_mgdl: changed(high, s.high_threshold_mgdl ?? 180),
      alerts: {
        ...prefs,
        disabled: disabled as Schemas["AlertKind"][],
        predicted_low_minutes: predicted,
        email,
        quiet_hours: quiet ? { start: `${quietStart}:00`, end: `${quietEnd}:00` } : null,
      },
    };
    const r = await api.PATCH("/api/v1/me/settings", { body }).catch(() => null);
    if (!r) return setMessage({ ok: false, text: "You are offline: settings need a connection." });
    if (!r.response.ok) return setMessage({ ok: false, text: problemMessage(r.error) });
    setProfile({ ...profile!, settings: r.data! });
    setMessage({ ok: true, text: "Alert settings saved." });
  };
  const toggle = (kind: string) => setDisabled((d) => (d.includes(kind) ? d.filter((k) => k !== kind) : [...d, kind]));

  return (
    <section className="card" aria-labelledby="alert-settings-title">
      <h2 id="alert-settings-title">Alert settings</h2>
      <PushControl status={push} setStatus={setPush} />
      <form onSubmit={(e) => void save(e)} className="settings-form">
        <fieldset>
          <legend>Thresholds ({unit})</legend>
          <label htmlFor="urgent-low">Urgent low (always on, never silenced)</label>
          <input id="urgent-low" inputMode="decimal" value={urgentLow} onChange={(e) => setUrgentLow(e.target.value)} />
          <label htmlFor="low">Low</label>
          <input id="low" inputMode="decimal" value={low} onChange={(e) => setLow(e.target.value)} />
          <label htmlFor="high">High</label>
          <input id="high" inputMode="decimal" value={high} onChange={(e) => setHigh(e.target.value)} />
        </fieldset>
        <fieldset>
          <legend>Which alerts</legend>
          {Object.entries(KIND_NAMES)
            .filter(([k]) => k !== "urgent_low")
            .map(([k, name]) => (
              <label key={k} className="check">
                <input type="checkbox" checked={!disabled.includes(k)} onChange={() => toggle(k)} /> {name}
              </label>
            ))}
          <label htmlFor="predicted">Warn of a predicted urgent low this many minutes ahead</label>
          <select id="predicted" value={predicted} onChange={(e) => setPredicted(Number(e.target.value))}>
            {[20, 25, 30].map((m) => (
              <option key={m} value={m}>
                {m} minutes
              </option>
            ))}
          </select>
        </fieldset>
        <fieldset>
          <legend>Quiet hours</legend>
          <label className="check">
            <input type="checkbox" checked={quiet} onChange={(e) => setQuiet(e.target.checked)} /> Don’t sound non-urgent alerts at night
          </label>
          {quiet && (
            <div className="row">
              <div>
                <label htmlFor="quiet-start">From</label>
                <input id="quiet-start" type="time" value={quietStart} onChange={(e) => setQuietStart(e.target.value)} />
              </div>
              <div>
                <label htmlFor="quiet-end">Until</label>
                <input id="quiet-end" type="time" value={quietEnd} onChange={(e) => setQuietEnd(e.target.value)} />
              </div>
            </div>
          )}
          <p className="hint">Urgent lows always sound.</p>
        </fieldset>
        <label className="check">
          <input type="checkbox" checked={email} onChange={(e) => setEmail(e.target.checked)} /> Also email me new alerts
        </label>
        {message && (
          <p className={message.ok ? "form-ok" : "form-error"} role={message.ok ? "status" : "alert"}>
            {message.text}
          </p>
        )}
        <button type="submit" className="primary">
          Save alert settings
        </button>
      </form>
      <p className="hint">
        Current thresholds: urgent low {formatGlucose(s.urgent_low_mgdl ?? 55, unit)}, low {formatGlucose(s.low_threshold_mgdl ?? 70, unit)}, high{" "}
        {formatGlucose(s.high_threshold_mgdl ?? 180, unit)} {unit}.
      </p>
    </section>
  );
}

function PushControl({ status, setStatus }: { status: PushStatus; setStatus: (s: PushStatus) => void }) {
  const [error, setError] = useState<string | null>(null);
  const run = (fn: () => Promise<PushStatus>) => () => {
    setError(null);
    fn()
      .then(setStatus)
      .catch((e: unknown) => setError(`Notifications could not be changed on this device${e instanceof Error ? ` (${e.message})` : ""}.`));
  };
  return (
    <div className="push-control" data-testid="push-control">
      <h3>Notifications on this device</h3>
      {status === "unsupported" && <p>This browser cannot receive push notifications. Install the app or use another browser.</p>}
      {status === "denied" && <p>Notifications are blocked for this site. Allow them in the browser’s site settings, then come back.</p>}
      {(status === "default" || status === "not-subscribed") && (
        <>
          <p>Get alerts on this device even when the app is closed.</p>
          <button type="button" className="primary" onClick={run(enablePush)}>
            Turn on notifications
          </button>
        </>
      )}
      {status === "subscribed" && (
        <>
          <p>This device receives alert notifications.</p>
          <button type="button" onClick={run(disablePush)}>
            Turn off on this device
          </button>
        </>
      )}
      <FormError message={error} />
    </div>
  );
}
