import { useEffect, useState, type FormEvent } from "react";
import { api, problemMessage } from "../api/client";
import { FormError } from "../components/FormError";
import { Link, navigate, useRoute } from "../lib/router";
import { forgetCachedData, useSession } from "../lib/session";
import { SSO_ERRORS, startSsoLogin, useSsoStatus } from "../lib/sso";

function AuthFrame({ title, children }: { title: string; children: React.ReactNode }) {
  useEffect(() => {
    document.title = `${title} · GlucoSync`;
  }, [title]);
  return (
    <main id="main" className="auth">
      <div className="auth-card">
        <p className="brand brand-large">
          <span aria-hidden="true" className="brand-mark">
            ◆
          </span>{" "}
          GlucoSync
        </p>
        <h1>{title}</h1>
        {children}
      </div>
    </main>
  );
}

function useAuthForm(after: () => Promise<void>) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = (fn: () => Promise<{ error?: unknown; response: Response }>) => async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await fn();
      if (r.error !== undefined || !r.response.ok) setError(problemMessage(r.error));
      else await after();
    } catch {
      setError("The server cannot be reached. Check your connection.");
    } finally {
      setBusy(false);
    }
  };
  return { error, busy, submit };
}

/** Email and password fields; a new password says so to password managers and shows the rule. */
function Credentials(p: { email: string; setEmail: (v: string) => void; password: string; setPassword: (v: string) => void; newPassword: boolean }) {
  return (
    <>
      <label htmlFor="email">Email</label>
      <input id="email" type="email" autoComplete="username" required value={p.email} onChange={(e) => p.setEmail(e.target.value)} />
      <label htmlFor="password">Password</label>
      <input
        id="password"
        type="password"
        autoComplete={p.newPassword ? "new-password" : "current-password"}
        required
        minLength={p.newPassword ? 10 : undefined}
        aria-describedby={p.newPassword ? "password-hint" : undefined}
        value={p.password}
        onChange={(e) => p.setPassword(e.target.value)}
      />
    </>
  );
}

export function Login() {
  const { setProfile } = useSession();
  const { search } = useRoute();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const form = useAuthForm(async () => {
    forgetCachedData();
    const me = await api.GET("/api/v1/me");
    setProfile(me.data ?? null);
    navigate(safeNext(search.get("next")), true);
  });
  const sso = useSsoStatus();
  const ssoError = search.get("sso_error");
  const next = safeNext(search.get("next"));
  const passwords = sso?.password_login ?? true;
  return (
    <AuthFrame title="Log in">
      {ssoError && (
        <p className="form-error" role="alert">
          {SSO_ERRORS[ssoError] ?? "Single sign-on did not complete. Please try again."}
        </p>
      )}
      {sso?.enabled && (
        <p>
          <button type="button" className={passwords ? "" : "primary"} onClick={() => startSsoLogin(next)}>
            Log in with single sign-on
          </button>
        </p>
      )}
      {passwords && (
        <>
          <form onSubmit={form.submit(() => api.POST("/api/v1/auth/login", { body: { email, password } }))} noValidate>
            <Credentials email={email} setEmail={setEmail} password={password} setPassword={setPassword} newPassword={false} />
            <FormError message={form.error} />
            <button type="submit" className="primary" disabled={form.busy}>
              {form.busy ? "Logging in…" : "Log in"}
            </button>
          </form>
          <p>
            New here? <Link to={`/signup${search.get("next") ? `?next=${encodeURIComponent(search.get("next")!)}` : ""}`}>Create an account</Link>
          </p>
        </>
      )}
    </AuthFrame>
  );
}

/** Where to go after logging in: a path of this app only (never another site). */
function safeNext(next: string | null): string {
  return next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

export function Signup() {
  const { setProfile } = useSession();
  const { search } = useRoute();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const form = useAuthForm(async () => {
    forgetCachedData();
    await api.POST("/api/v1/auth/login", { body: { email, password } });
    // Reports need the person's own time zone for "today" and "night": the device's, to start.
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone) await api.PATCH("/api/v1/me/settings", { body: { time_zone: zone } }).catch(() => undefined);
    const me = await api.GET("/api/v1/me");
    setProfile(me.data ?? null);
    navigate(safeNext(search.get("next")), true);
  });
  return (
    <AuthFrame title="Create your account">
      <form onSubmit={form.submit(() => api.POST("/api/v1/auth/signup", { body: { email, password } }))} noValidate>
        <Credentials email={email} setEmail={setEmail} password={password} setPassword={setPassword} newPassword />
        <p id="password-hint" className="hint">
          At least 10 characters. A passphrase of a few words is easy to remember and hard to guess.
        </p>
        <FormError message={form.error} />
        <button type="submit" className="primary" disabled={form.busy}>
          {form.busy ? "Creating…" : "Create account"}
        </button>
      </form>
      <p>
        Have an account? <Link to="/login">Log in</Link>
      </p>
    </AuthFrame>
  );
}
