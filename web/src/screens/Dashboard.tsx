import { useEffect, useMemo, useRef, useState } from "react";
import { api, problemMessage, type Schemas } from "../api/client";
import { GlucoseChart } from "../components/GlucoseChart";
import { Layout } from "../components/Layout";
import { treatmentLabel, type ForecastPoint, type GlucosePoint, type TreatmentMark } from "../lib/chartData";
import { ago, BAND_LABEL, formatDelta, formatGlucose, rangeBand, STALE_AFTER_MS, trendArrow, trendFromReadings, type Trend } from "../lib/glucose";
import { Link } from "../lib/router";
import { useSession } from "../lib/session";
import { useResource } from "../lib/useResource";

const HOURS = [3, 6, 12, 24] as const;

interface Latest {
  t: number;
  mgdl: number;
  trend: Trend | null;
  deltaMgdl: number | null;
}

/** Ticks every `ms`, so "4 min ago" and the stale state stay true without new data. */
export function useNow(ms = 15_000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export function Dashboard() {
  return (
    <Layout title="Dashboard">
      <PersonGlucose />
      <p>
        <Link to="/logbook" className="button primary">
          Log insulin, carbs or a note
        </Link>
      </p>
    </Layout>
  );
}

/**
 * One person's live glucose: current value, alerts and chart. `person` is someone the caller
 * follows (the caregiver view); without it, the caller's own.
 */
export function PersonGlucose({ person }: { person?: number }) {
  const { profile, unit, targets, live } = useSession();
  const subject = person ?? profile?.id;
  const [hours, setHours] = useState<(typeof HOURS)[number]>(3);
  const now = useNow();
  // The window moves with new readings, not with every tick.
  const [windowEnd, setWindowEnd] = useState(() => Date.now());
  const from = windowEnd - hours * 3_600_000;
  const latestRes = useResource(() => api.GET("/api/v1/readings/latest", { params: { query: { person } } }), [person]);
  const readingsRes = useResource(
    () =>
      api.GET("/api/v1/readings", {
        params: { query: { person, from: new Date(from).toISOString(), to: new Date(windowEnd + 60_000).toISOString(), limit: 10000 } },
      }),
    [person, from, windowEnd],
  );
  const treatmentsRes = useResource(
    () =>
      api.GET("/api/v1/treatments", {
        params: { query: { person, from: new Date(from).toISOString(), to: new Date(windowEnd + 3_600_000).toISOString(), limit: 10000 } },
      }),
    [person, from, windowEnd],
  );
  const forecastRes = useResource(() => api.GET("/api/v1/forecast", { params: { query: { person } } }), [person]);
  const alertsRes = useResource(() => api.GET("/api/v1/alerts", { params: { query: { person } } }), [person]);
  const deviceRes = useResource(() => api.GET("/api/v1/device-status", { params: { query: { person } } }), [person]);
  const [liveReadings, setLiveReadings] = useState<GlucosePoint[]>([]);
  const [liveLatest, setLiveLatest] = useState<Latest | null>(null);
  const [liveForecast, setLiveForecast] = useState<Schemas["ForecastOut"] | null>(null);

  // Live events are handled with the newest state and reloads, whatever render subscribed.
  const current = useRef({ latestRes, readingsRes, treatmentsRes, forecastRes, alertsRes, deviceRes, windowEnd });
  current.current = { latestRes, readingsRes, treatmentsRes, forecastRes, alertsRes, deviceRes, windowEnd };
  useEffect(
    () =>
      live.onEvent((e) => {
        const c = current.current;
        if (e.type === "reconnected") {
          // Back after a gap: reload everything replay does not cover.
          c.latestRes.reload();
          c.readingsRes.reload();
          c.treatmentsRes.reload();
          c.forecastRes.reload();
          c.alertsRes.reload();
          c.deviceRes.reload();
          return;
        }
        if (e.person !== undefined && e.person !== subject) return;
        if (e.type === "share_revoked") {
          c.latestRes.reload();
        } else if (e.type === "reading") {
          const rs = ((e.readings as { time: string; value: number; kind: string; trend?: Trend | null }[]) ?? []).filter((r) => r.kind === "cgm");
          if (rs.length === 0) return;
          const points = rs.map((r) => ({ t: Date.parse(r.time), mgdl: r.value }));
          setLiveReadings((old) => [...old, ...points]);
          const newest = rs.reduce((a, b) => (Date.parse(b.time) > Date.parse(a.time) ? b : a));
          const t = Date.parse(newest.time);
          setLiveLatest((old) => {
            const base = old ?? latestOf(c.latestRes.data);
            if (base && base.t >= t) return old;
            const delta = base && t - base.t <= 15 * 60_000 ? newest.value - base.mgdl : null;
            return { t, mgdl: newest.value, trend: newest.trend ?? null, deltaMgdl: delta };
          });
          if (Date.now() - c.windowEnd > 60_000) setWindowEnd(Date.now());
        } else if (e.type === "forecast") {
          setLiveForecast(e as unknown as Schemas["ForecastOut"]);
        } else if (e.type === "alert") {
          c.alertsRes.reload();
        } else if (e.type === "data_changed" && e.what === "devicestatus") {
          c.deviceRes.reload();
        } else if (e.type === "data_changed") {
          c.treatmentsRes.reload();
          if (e.what === "readings") {
            // Readings were deleted: what was current may be gone.
            setLiveLatest(null);
            setLiveReadings([]);
            c.latestRes.reload();
            c.readingsRes.reload();
          }
        }
      }),
    [live, subject],
  );

  // A reload holds what arrived live before it was asked; later live readings stay.
  useEffect(() => {
    const items = readingsRes.data?.items;
    if (!items || items.length === 0) return;
    const newest = Date.parse(items[items.length - 1]!.time);
    setLiveReadings((old) => old.filter((p) => p.t > newest));
  }, [readingsRes.data]);

  const picked = pickLatest(latestOf(latestRes.data), liveLatest);
  const readings = useMemo<GlucosePoint[]>(
    () => [
      ...(readingsRes.data?.items ?? []).filter((r) => r.kind === "cgm").map((r) => ({ t: Date.parse(r.time), mgdl: r.value })),
      ...liveReadings,
    ],
    [readingsRes.data, liveReadings],
  );
  // Without a trend from the uploader, the app computes one from the last 15 minutes.
  const latest = picked && !picked.trend ? { ...picked, trend: trendFromReadings(readings.filter((p) => p.t <= picked.t)) } : picked;
  // A forecast from stale data is not drawn: it would look current.
  const fresh = latest != null && now - latest.t <= STALE_AFTER_MS;
  const forecastOut = fresh ? newerForecast(forecastRes.data, liveForecast) : null;
  const forecast = useMemo<ForecastPoint[] | null>(
    () => forecastOut?.points.map((p) => ({ t: Date.parse(p.time), mgdl: p.value, lower: p.lower, upper: p.upper })) ?? null,
    [forecastOut],
  );
  const marks = useMemo<TreatmentMark[]>(
    () =>
      (treatmentsRes.data?.items ?? [])
        .filter((t) => t.kind !== "basal_rate")
        .map((t) => ({ t: Date.parse(t.time), kind: t.kind as TreatmentMark["kind"], label: treatmentLabel(t) })),
    [treatmentsRes.data],
  );
  const end = Math.max(now, windowEnd) + (forecast ? 60 * 60_000 : 10 * 60_000);
  const open = (alertsRes.data?.alerts ?? []).filter((a) => a.state !== "resolved");

  return (
    <>
      {open.length > 0 && <AlertStrip alerts={open} person={person} onChange={alertsRes.reload} />}
      <CurrentValue latest={latest} now={now} loading={latestRes.loading && !latest} error={latest ? null : latestRes.error} own={person == null} />
      {deviceRes.data && <DeviceStatus status={deviceRes.data} now={now} />}
      <section className="card" aria-labelledby="chart-title">
        <div className="card-head">
          <h2 id="chart-title">Last {hours} hours</h2>
          <div className="segmented" role="group" aria-label="Chart period">
            {HOURS.map((h) => (
              <button key={h} type="button" aria-pressed={h === hours} onClick={() => setHours(h)}>
                {h} h
              </button>
            ))}
          </div>
        </div>
        <GlucoseChart
          readings={readings}
          forecast={forecast}
          treatments={marks}
          from={now - hours * 3_600_000}
          to={end}
          unit={unit}
          targets={targets}
          label={`Glucose over the last ${hours} hours: ${readings.length} readings${forecast ? ", with a forecast for the next hour" : ""}.`}
        />
        {forecastOut && (
          <p className="hint">
            Forecast from the reading at {new Date(forecastOut.issued_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} (
            {forecastOut.model_version.includes("personal") ? "your personal model" : "population model"}). Informational only; not
            dosing advice.
          </p>
        )}
      </section>
    </>
  );
}

/** The pump, phone and loop as a looping app or uploader last reported them (Nightscout's devicestatus). */
function DeviceStatus({ status, now }: { status: Schemas["DeviceStatusOut"]; now: number }) {
  const parts: { label: string; value: string; testId: string }[] = [];
  const round = (v: number, digits = 0) => v.toFixed(digits);
  if (status.iob_units != null) parts.push({ label: "Insulin on board", value: `${round(status.iob_units, 2)} U`, testId: "device-iob" });
  if (status.cob_grams != null) parts.push({ label: "Carbs on board", value: `${round(status.cob_grams)} g`, testId: "device-cob" });
  const reservoir = status.pump_reservoir_text ?? (status.pump_reservoir_units != null ? `${round(status.pump_reservoir_units)} U` : null);
  if (reservoir) parts.push({ label: "Reservoir", value: reservoir, testId: "device-reservoir" });
  if (status.pump_battery_percent != null) parts.push({ label: "Pump battery", value: `${round(status.pump_battery_percent)} %`, testId: "device-pump-battery" });
  if (status.uploader_battery_percent != null)
    parts.push({ label: "Phone battery", value: `${round(status.uploader_battery_percent)} %`, testId: "device-phone-battery" });
  if (status.pump_suspended) parts.push({ label: "Pump", value: "suspended", testId: "device-suspended" });
  if (parts.length === 0) return null;
  const loopAt = status.loop_at ? Date.parse(status.loop_at) : null;
  return (
    <section className="card" aria-labelledby="device-title" data-testid="device-status">
      <h2 id="device-title">{status.loop_name ?? "Devices"}</h2>
      <dl className="device-status">
        {parts.map((p) => (
          <div key={p.testId}>
            <dt>{p.label}</dt>
            <dd data-testid={p.testId}>{p.value}</dd>
          </div>
        ))}
      </dl>
      <p className="hint">
        {loopAt ? `Last loop ${ago(now - loopAt)}. ` : ""}Reported {ago(now - Date.parse(status.updated_at))}.
      </p>
    </section>
  );
}

function latestOf(r: Schemas["LatestReading"] | undefined): Latest | null {
  if (!r) return null;
  return { t: Date.parse(r.time), mgdl: r.value, trend: (r.trend as Trend | null) ?? null, deltaMgdl: r.delta ?? null };
}

function pickLatest(a: Latest | null, b: Latest | null): Latest | null {
  if (!a) return b;
  if (!b) return a;
  return b.t > a.t ? b : a;
}

function newerForecast(a: Schemas["ForecastOut"] | undefined, b: Schemas["ForecastOut"] | null) {
  if (!a) return b;
  if (!b) return a;
  return Date.parse(b.issued_at) >= Date.parse(a.issued_at) ? b : a;
}

/** Marks the moment the current glucose is first on screen (the performance harness reads it). */
function markShown() {
  if (performance.getEntriesByName("glucose-shown").length === 0) performance.mark("glucose-shown");
}

function CurrentValue({
  latest,
  now,
  loading,
  error,
  own,
}: {
  latest: Latest | null;
  now: number;
  loading: boolean;
  error: string | null;
  own: boolean;
}) {
  const { unit, targets } = useSession();
  const shown = latest != null;
  useEffect(() => {
    // After the frame that paints the value.
    if (shown) requestAnimationFrame(() => setTimeout(markShown, 0));
  }, [shown]);
  if (loading) return <section className="current card">Loading the latest reading…</section>;
  if (!latest && error)
    return (
      <section className="current card stale" role="alert">
        <h2>The latest reading could not be loaded</h2>
        <p>{error}</p>
      </section>
    );
  if (!latest && !own)
    return (
      <section className="current card" data-testid="current-empty">
        <h2>No readings yet</h2>
      </section>
    );
  if (!latest)
    return (
      <section className="current card" data-testid="current-empty">
        <h2>No readings yet</h2>
        <p>
          Connect an uploader in <Link to="/settings">Settings → Uploaders</Link> and readings appear here within seconds.
        </p>
      </section>
    );
  const age = now - latest.t;
  const stale = age > STALE_AFTER_MS;
  const band = rangeBand(latest.mgdl, targets);
  const { arrow, label } = trendArrow(latest.trend);
  return (
    <section className={`current card band-${band}${stale ? " stale" : ""}`} aria-labelledby="current-title" data-testid="current">
      <h2 id="current-title" className="visually-hidden">
        Current glucose
      </h2>
      <div className="current-row">
        <p className="visually-hidden" aria-live="polite" data-testid="current-spoken">
          {`${formatGlucose(latest.mgdl, unit)} ${unit}, ${BAND_LABEL[band].toLowerCase()}, ${label}${stale ? ", old reading" : ""}`}
        </p>
        <p className="current-value" aria-hidden="true">
          <span data-testid="current-value">{formatGlucose(latest.mgdl, unit)}</span>
          <span className="current-unit">{unit}</span>
          {arrow && (
            <span className="current-arrow" role="img" aria-label={label} data-testid="current-trend">
              {arrow}
            </span>
          )}
        </p>
        <div className="current-facts">
          <p className="band-label" data-testid="current-band">
            {BAND_LABEL[band]}
          </p>
          <p data-testid="current-delta">
            {latest.deltaMgdl != null ? `${formatDelta(latest.deltaMgdl, unit)} ${unit}` : "No change known"}
          </p>
          <p data-testid="current-age">
            <time dateTime={new Date(latest.t).toISOString()}>{ago(age)}</time>
          </p>
        </div>
      </div>
      {stale && (
        <p className="stale-note" role="alert" data-testid="stale-data">
          No new reading for {Math.floor(age / 60_000)} minutes. Check the sensor and the uploader; the value above is old.
        </p>
      )}
    </section>
  );
}

function AlertStrip({ alerts, person, onChange }: { alerts: Schemas["AlertOut"][]; person?: number; onChange: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const acknowledge = async (kind: string) => {
    setError(null);
    const r = await api.POST("/api/v1/alerts/{kind}/acknowledge", { params: { path: { kind }, query: { person } } }).catch(() => null);
    if (!r) setError("You are offline: acknowledging needs a connection.");
    else if (!r.response.ok) setError(problemMessage(r.error));
    onChange();
  };
  return (
    <section className="alert-strip" aria-label="Active alerts" role="alert">
      {alerts.map((a) => (
        <div key={a.kind} className={`alert-item${a.urgent ? " urgent" : ""}`}>
          <strong>{a.title}</strong> <span className="muted">{a.state === "active" ? "" : a.state}</span>
          {a.state === "active" && (
            <button type="button" onClick={() => void acknowledge(a.kind)}>
              Acknowledge
            </button>
          )}
        </div>
      ))}
      {error && <p className="form-error">{error}</p>}
    </section>
  );
}
