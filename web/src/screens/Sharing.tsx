import { useState, type FormEvent } from "react";
import { api, problemMessage, type Schemas } from "../api/client";
import { Layout } from "../components/Layout";
import { shortTime } from "../lib/time";
import { usePagedLog, useResource } from "../lib/useResource";
import { FormError } from "../components/FormError";

export default function Sharing() {
  const shares = useResource(() => api.GET("/api/v1/shares"), []);
  const log = usePagedLog((cursor) => api.GET("/api/v1/access-log", { params: { query: { limit: 100, cursor } } }), []);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<"caregiver" | "clinician">("caregiver");
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState<Schemas["CreatedInvite"] | null>(null);

  const invite = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setCreated(null);
    const r = await api.POST("/api/v1/shares", { body: { email, role } }).catch(() => null);
    if (!r) return setError("You are offline: inviting needs a connection.");
    if (!r.response.ok || !r.data) return setError(problemMessage(r.error));
    setCreated(r.data);
    setEmail("");
    shares.reload();
  };
  const revoke = async (s: Schemas["ShareOut"]) => {
    if (!confirm(`Stop sharing with ${s.invite_email}? They lose access at once.`)) return;
    const r = await api.DELETE("/api/v1/shares/{id}", { params: { path: { id: s.id } } }).catch(() => null);
    if (!r?.response.ok) setError(r ? problemMessage(r.error) : "You are offline: revoking needs a connection.");
    shares.reload();
  };
  const inviteLink = created ? `${location.origin}/app/invite#${created.invite_token}` : "";

  return (
    <Layout title="Sharing">
      <section className="card" aria-labelledby="invite-title">
        <h2 id="invite-title">Invite a follower</h2>
        <p className="hint">
          A caregiver sees your glucose, forecasts and alerts live and can be notified of your alerts. A clinician sees your reports. You can
          revoke either at any time; every read they make is in the access log below.
        </p>
        <form onSubmit={(e) => void invite(e)} className="settings-form">
          <label htmlFor="invite-email">Their email</label>
          <input id="invite-email" type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
          <label htmlFor="invite-role">Role</label>
          <select id="invite-role" value={role} onChange={(e) => setRole(e.target.value as "caregiver" | "clinician")}>
            <option value="caregiver">Caregiver (live data and alerts)</option>
            <option value="clinician">Clinician (reports)</option>
          </select>
          <FormError message={error} />
          <button type="submit" className="primary">
            Send invite
          </button>
        </form>
        {created && (
          <div className="secret" role="status">
            <p>
              {created.emailed ? "We emailed the invite. " : "Email is not configured on this server: send this link yourself. "}
              The link works once and expires on {shortTime(created.expires_at)}.
            </p>
            <label htmlFor="invite-link">Invite link</label>
            <input id="invite-link" readOnly value={inviteLink} onFocus={(e) => e.target.select()} />
          </div>
        )}
      </section>
      <section className="card" aria-labelledby="shares-title">
        <h2 id="shares-title">People you share with</h2>
        <ul className="entries" data-testid="share-list">
          {(shares.data ?? []).map((s) => (
            <li key={s.id}>
              <strong>{s.invite_email}</strong> <span className="tag">{s.role}</span> <span className="muted">{s.status}</span>
              {s.status !== "revoked" && (
                <span className="entry-actions">
                  <button type="button" onClick={() => void revoke(s)}>
                    {s.status === "pending" ? "Cancel invite" : "Revoke"}
                  </button>
                </span>
              )}
            </li>
          ))}
          {shares.data?.length === 0 && <li className="muted">You do not share your data with anyone.</li>}
        </ul>
      </section>
      <section className="card" aria-labelledby="log-title">
        <h2 id="log-title">Access log</h2>
        <table className="metrics">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Who</th>
              <th scope="col">What</th>
            </tr>
          </thead>
          <tbody>
            {log.items.map((a, i) => (
              <tr key={i}>
                <td>{shortTime(a.time)}</td>
                <td>{a.follower_email}</td>
                <td>{a.what}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {log.data?.items.length === 0 && <p className="muted">Nobody has read your data.</p>}
        {log.hasMore && (
          <button type="button" onClick={() => void log.more()} disabled={log.loadingMore}>
            Show older entries
          </button>
        )}
      </section>
    </Layout>
  );
}
