import { useState } from "react";
import { api, problemMessage } from "../api/client";
import { Layout } from "../components/Layout";
import { INVITE_KEY, navigate } from "../lib/router";
import { FormError } from "../components/FormError";

/** Accepting an invite: the token arrives in the URL fragment (never sent to a server log). */
export default function AcceptInvite() {
  const token = location.hash.slice(1) || sessionStorage.getItem(INVITE_KEY) || "";
  const [error, setError] = useState<string | null>(null);
  const accept = async () => {
    const r = await api.POST("/api/v1/shares/accept", { body: { invite_token: token } }).catch(() => null);
    if (!r) return setError("You are offline: accepting needs a connection.");
    if (!r.response.ok) return setError(problemMessage(r.error));
    sessionStorage.removeItem(INVITE_KEY);
    history.replaceState(null, "", location.pathname);
    navigate("/following", true);
  };
  return (
    <Layout title="Accept an invite">
      <section className="card">
        {token ? (
          <>
            <p>Someone invited you to follow their glucose data. Accept to see it under Following.</p>
            <button type="button" className="primary" onClick={() => void accept()}>
              Accept invite
            </button>
          </>
        ) : (
          <p>This invite link is incomplete. Ask for a new one.</p>
        )}
        <FormError message={error} />
      </section>
    </Layout>
  );
}
