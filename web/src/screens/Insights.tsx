import { useState, type FormEvent } from "react";
import { api, problemMessage, type Schemas } from "../api/client";
import { FormError } from "../components/FormError";
import { Layout } from "../components/Layout";
import { followedName, useFollowed } from "../lib/following";
import { useRoute } from "../lib/router";
import { useSession } from "../lib/session";
import { useResource } from "../lib/useResource";
import { streamAi } from "../lib/aiStream";

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
      {person === undefined && <AiInsights />}
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

/**
 * The weekly summary and questions, written by the AI service the installation configured:
 * offered only there, and used only after the person agrees (what is sent is said first).
 */
function AiInsights() {
  const status = useResource(() => api.GET("/api/v1/insights/ai"), []);
  const [answer, setAnswer] = useState<{ text: string; withheld: boolean } | null>(null);
  const [question, setQuestion] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<"summary" | "ask" | "consent" | null>(null);
  const s = status.data;
  if (!s?.available) return null;
  const consent = async () => {
    setBusy("consent");
    setError(null);
    try {
      const r = await api.PATCH("/api/v1/me/settings", { body: { ai_insights: true } });
      if (!r.response.ok) setError(problemMessage(r.error));
      else status.reload();
    } catch {
      setError("The server cannot be reached. Check your connection.");
    } finally {
      setBusy(null);
    }
  };
  // The reply appears as it is written, a sentence at a time.
  const run = async (what: "summary" | "ask") => {
    setBusy(what);
    setError(null);
    setAnswer(null);
    try {
      await streamAi(what === "summary" ? "/api/v1/insights/summary" : "/api/v1/insights/ask", what === "ask" ? { question } : undefined, {
        text: (text, withheld) => setAnswer({ text, withheld }),
      });
    } catch (e) {
      setError(e instanceof TypeError ? "The server cannot be reached. Check your connection." : (e as Error).message);
    } finally {
      setBusy(null);
    }
  };
  if (!s.opted_in) {
    return (
      <section className="card" aria-labelledby="ai-title">
        <h2 id="ai-title">AI summaries</h2>
        <p>
          A weekly summary in plain words, and answers to your questions about your data. To write them, GlucoSync sends figures of your last weeks (time in
          range, averages, the patterns below) to the AI service your GlucoSync administrator chose. Never your name, email, notes or single readings. You can
          turn this off in Settings.
        </p>
        <FormError message={error} />
        <button type="button" disabled={busy !== null} onClick={() => void consent()}>
          Turn on AI summaries
        </button>
      </section>
    );
  }
  const ask = (e: FormEvent) => {
    e.preventDefault();
    void run("ask");
  };
  return (
    <section className="card" aria-labelledby="ai-title">
      <h2 id="ai-title">AI summaries</h2>
      <p className="muted">Written by an AI from your figures: informational, may be wrong, never dosing advice. Up to {s.daily_limit} a day.</p>
      <button type="button" disabled={busy !== null} onClick={() => void run("summary")}>
        {busy === "summary" ? "Writing…" : "Write my weekly summary"}
      </button>
      <form onSubmit={ask} className="ai-ask">
        <label htmlFor="ai-question">Ask about your data</label>
        <textarea id="ai-question" maxLength={500} rows={2} required value={question} onChange={(e) => setQuestion(e.target.value)} />
        <button type="submit" disabled={busy !== null || question.trim() === ""}>
          {busy === "ask" ? "Asking…" : "Ask"}
        </button>
      </form>
      <FormError message={error} />
      {answer && (
        <div className={answer.withheld ? "banner banner-warn ai-answer" : "ai-answer"} aria-live="polite" data-testid="ai-answer">
          <p>{answer.text}</p>
        </div>
      )}
    </section>
  );
}
