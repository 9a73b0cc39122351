import { useEffect, useRef, useState } from "react";
import { api, problemMessage, type Schemas } from "../api/client";
import { Layout } from "../components/Layout";
import { followedName } from "../lib/following";
import { Link } from "../lib/router";
import { useSession } from "../lib/session";
import { useResource } from "../lib/useResource";
import { PersonGlucose } from "./Dashboard";
import { FormError } from "../components/FormError";


/** The caregiver view: the people one follows, each live, one at a time. */
export default function Following() {
  const { live } = useSession();
  const following = useResource(() => api.GET("/api/v1/following"), []);
  const active = (following.data ?? []).filter((s) => s.status === "active");
  const people = active.filter((s) => s.role === "caregiver");
  const clinical = active.filter((s) => s.role === "clinician");
  const [chosen, setChosen] = useState<number | null>(null);
  const current = chosen ?? people[0]?.owner_id ?? null;

  useEffect(() => {
    if (current == null) return;
    live.follow(current);
    return () => live.unfollow(current);
  }, [current, live]);

  useEffect(
    () =>
      live.onEvent((e) => {
        if (e.type === "share_revoked") following.reload();
      }),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [live],
  );

  const person = people.find((p) => p.owner_id === current);
  return (
    <Layout title="Following">
      {clinical.length > 0 && (
        <section className="card" aria-labelledby="clinical-title">
          <h2 id="clinical-title">Reports shared with you</h2>
          <ul className="entries">
            {clinical.map((p) => (
              <li key={p.owner_id}>
                <Link to={`/reports?person=${p.owner_id}`}>Reports of {followedName(p)}</Link>
              </li>
            ))}
          </ul>
        </section>
      )}
      {following.data && active.length === 0 && (
        <section className="card">
          <p>You don’t follow anyone yet. When someone invites you as a caregiver, open their invite link while logged in.</p>
        </section>
      )}
      {people.length > 1 && (
        <div className="segmented" role="group" aria-label="Whom to show">
          {people.map((p) => (
            <button key={p.owner_id} type="button" aria-pressed={p.owner_id === current} onClick={() => setChosen(p.owner_id)}>
              {followedName(p)} <ActiveAlertCount person={p.owner_id} />
            </button>
          ))}
        </div>
      )}
      {person && (
        <>
          <h2>{followedName(person)}</h2>
          <PersonGlucose key={person.owner_id} person={person.owner_id} />
          <p>
            <Link to={`/alerts?person=${person.owner_id}`}>Alerts of {followedName(person)}</Link> ·{" "}
            <Link to={`/reports?person=${person.owner_id}`}>Reports of {followedName(person)}</Link>
          </p>
          <FollowChannels key={person.owner_id} share={person} />
        </>
      )}
    </Layout>
  );
}

function FollowChannels({ share }: { share: Schemas["FollowedOut"] }) {
  const [push, setPush] = useState(share.notify_push);
  const [email, setEmail] = useState(share.notify_email);
  const [error, setError] = useState<string | null>(null);
  const save = async (next: { push: boolean; email: boolean }) => {
    const before = { push, email };
    setPush(next.push);
    setEmail(next.email);
    setError(null);
    const r = await api.PATCH("/api/v1/following/{owner_id}", { params: { path: { owner_id: share.owner_id } }, body: next }).catch(() => null);
    if (!r?.response.ok) {
      // Show what is really in force.
      setPush(before.push);
      setEmail(before.email);
      setError(r ? problemMessage(r.error) : "You are offline: this needs a connection.");
    }
  };
  return (
    <fieldset className="card">
      <legend>Notify me of {followedName(share)}’s alerts</legend>
      <label className="check">
        <input type="checkbox" checked={push} onChange={(e) => void save({ push: e.target.checked, email })} /> Push notifications on my devices
      </label>
      <label className="check">
        <input type="checkbox" checked={email} onChange={(e) => void save({ push, email: e.target.checked })} /> Email
      </label>
      <FormError message={error} />
    </fieldset>
  );
}

/** How many alerts a followed person has open, beside their name: the others stay in view. */
function ActiveAlertCount({ person }: { person: number }) {
  const { live } = useSession();
  const alerts = useResource(() => api.GET("/api/v1/alerts", { params: { query: { person } } }), [person]);
  const reload = useRef(alerts.reload);
  reload.current = alerts.reload;
  useEffect(
    () =>
      live.onEvent((e) => {
        if ((e.type === "alert" && e.person === person) || e.type === "reconnected") reload.current();
      }),
    [live, person],
  );
  const open = (alerts.data?.alerts ?? []).filter((a) => a.state === "active");
  if (open.length === 0) return null;
  const urgent = open.some((a) => a.urgent);
  return (
    <span className={`tag ${urgent ? "tag-error" : ""}`}>
      {open.length} {urgent ? "urgent " : ""}
      {open.length === 1 ? "alert" : "alerts"}
    </span>
  );
}
