import { api, type Schemas } from "../api/client";
import { Layout } from "../components/Layout";
import { followedName, useFollowed } from "../lib/following";
import { useRoute } from "../lib/router";
import { useSession } from "../lib/session";
import { useResource } from "../lib/useResource";

type Pattern = Schemas["PatternOut"];
type Evidence = Schemas["EvidenceOut"];

const SEVERITY: Record<Pattern["severity"], string> = {
  attention: "Needs attention",
  notice: "Worth a look",
  info: "For information",
};

/**
 * Patterns the server found in the last weeks, each with the days that show it: the person (or
 * someone they share with) can check every one against the readings.
 */
export default function Insights() {
  const { unit, profile } = useSession();
  const { search } = useRoute();
  const person = search.get("person") ? Number(search.get("person")) : undefined;
  const whose = useFollowed(person);
  const name = whose ? followedName(whose) : person ? `Person ${person}` : profile?.display_name || profile?.email;
  const report = useResource(() => api.GET("/api/v1/insights/patterns", { params: { query: { person, unit } } }), [person, unit]);
  const patterns = report.data?.patterns ?? [];
  return (
    <Layout title={person ? `Insights for ${name}` : "Insights"}>
      <p className="muted">
        Patterns in the last two to four weeks, found by fixed rules. They are observations to discuss with a care team, not advice on doses.
      </p>
      {report.error && <p className="form-error">{report.error}</p>}
      {report.loading && !report.data && <p>Looking for patterns…</p>}
      {report.data && patterns.length === 0 && <p>No patterns yet: they need at least a few days of readings.</p>}
      <ul className="pattern-list">
        {patterns.map((p, i) => (
          <li key={`${p.kind}-${i}`}>
            <PatternCard pattern={p} />
          </li>
        ))}
      </ul>
    </Layout>
  );
}

function PatternCard({ pattern }: { pattern: Pattern }) {
  const headingId = `pattern-${pattern.kind}-${pattern.title.replace(/\W+/g, "-")}`;
  return (
    <section className={`card pattern pattern-${pattern.severity}`} aria-labelledby={headingId}>
      <p className={`badge badge-${pattern.severity}`}>{SEVERITY[pattern.severity]}</p>
      <h2 id={headingId}>{pattern.title}</h2>
      <p>{pattern.detail}</p>
      {pattern.evidence.length > 0 && (
        <details>
          <summary>
            Evidence ({pattern.evidence.length} {pattern.evidence.length === 1 ? "item" : "items"})
          </summary>
          <ul className="evidence-list">
            {pattern.evidence.map((e, i) => (
              <li key={i}>
                <EvidenceRow evidence={e} />
              </li>
            ))}
          </ul>
        </details>
      )}
    </section>
  );
}

function EvidenceRow({ evidence }: { evidence: Evidence }) {
  const date = new Date(`${evidence.date}T12:00:00`);
  return (
    <>
      <span className="evidence-date">
        {Number.isNaN(date.getTime()) ? evidence.date : date.toLocaleDateString(undefined, { weekday: "short", month: "short", day: "numeric" })}
      </span>{" "}
      <span>{evidence.note}</span>
      {evidence.readings.length > 2 && <Sparkline readings={evidence.readings} />}
    </>
  );
}

/** The evidence's readings as a small line, for a glance at its shape (the note has the numbers). */
function Sparkline({ readings }: { readings: Evidence["readings"] }) {
  const times = readings.map((r) => Date.parse(r.time));
  const values = readings.map((r) => r.value);
  const [t0, t1] = [Math.min(...times), Math.max(...times)];
  const [v0, v1] = [Math.min(...values), Math.max(...values)];
  const x = (t: number) => (t1 > t0 ? ((t - t0) / (t1 - t0)) * 116 + 2 : 60);
  const y = (v: number) => (v1 > v0 ? 22 - ((v - v0) / (v1 - v0)) * 20 : 12);
  const points = readings.map((r) => `${x(Date.parse(r.time)).toFixed(1)},${y(r.value).toFixed(1)}`).join(" ");
  return (
    <svg className="sparkline" viewBox="0 0 120 24" width="120" height="24" aria-hidden="true" focusable="false">
      <polyline points={points} fill="none" stroke="currentColor" strokeWidth="1.5" />
    </svg>
  );
}
