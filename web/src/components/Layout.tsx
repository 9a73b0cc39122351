import { useEffect, useState } from "react";
import { Link, useRoute } from "../lib/router";
import { useSession } from "../lib/session";
import { DeletionBanner } from "../screens/YourData";

const NAV = [
  { to: "/", label: "Dashboard", icon: "◉" },
  { to: "/logbook", label: "Logbook", icon: "✎" },
  { to: "/reports", label: "Reports", icon: "▤" },
  { to: "/insights", label: "Insights", icon: "✦" },
  { to: "/alerts", label: "Alerts", icon: "⚠" },
  { to: "/following", label: "Following", icon: "♥" },
  { to: "/sharing", label: "Sharing", icon: "⇄" },
  { to: "/settings", label: "Settings", icon: "⚙" },
];

/** The frame of every signed-in screen: navigation, the connection banner, the content. */
let firstScreen = true;

export function Layout({ title, children }: { title: string; children: React.ReactNode }) {
  const { path } = useRoute();
  const { profile, logout } = useSession();
  useEffect(() => {
    document.title = `${title} · GlucoSync`;
    // After a move to another screen, a screen reader starts at its heading (not on the first load).
    if (firstScreen) firstScreen = false;
    else document.getElementById("main")?.focus({ preventScroll: true });
  }, [title]);
  return (
    <div className="shell">
      <a
        className="skip-link"
        href="#main"
        onClick={(e) => {
          // Focus without touching the URL's fragment (an invite's token lives there).
          e.preventDefault();
          document.getElementById("main")?.focus();
        }}
      >
        Skip to content
      </a>
      <header className="topbar">
        <Link to="/" className="brand" aria-label="GlucoSync dashboard">
          <span aria-hidden="true" className="brand-mark">
            ◆
          </span>{" "}
          GlucoSync
        </Link>
        <span className="who">{profile?.display_name || profile?.email}</span>
        <button type="button" className="link-button" onClick={() => void logout()}>
          Log out
        </button>
      </header>
      <nav className="nav" aria-label="Main">
        <ul>
          {NAV.map((n) => (
            <li key={n.to}>
              <Link to={n.to} aria-current={path === n.to ? "page" : undefined}>
                <span aria-hidden="true" className="nav-icon">
                  {n.icon}
                </span>
                <span className="nav-label">{n.label}</span>
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      <ConnectionBanner />
      <DeletionBanner />
      <main id="main" tabIndex={-1}>
        <h1 className="screen-title">{title}</h1>
        {children}
      </main>
      <footer className="footnote">
        Forecasts and alerts are informational and are not dosing advice. GlucoSync is not a medical device.
      </footer>
    </div>
  );
}

/** An unmistakable banner while offline or while the live connection is down. */
export function ConnectionBanner() {
  const { online, liveState, retryAt, liveSince, pending, live } = useSession();
  const [, tick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => tick((n) => n + 1), 1_000);
    return () => clearInterval(t);
  }, []);
  const waiting = pending.filter((p) => !p.rejected).length;
  let message: string | null = null;
  if (!online) message = "You are offline. Showing the last data this device received.";
  // A connection that opens within two seconds (every page load) is not worth a banner.
  else if ((liveState === "closed" && retryAt != null) || (liveState === "connecting" && Date.now() - liveSince > 2_000))
    message = liveState === "connecting" ? "Connecting to live updates…" : "Live updates are disconnected.";
  // The countdown stays out of the live region: a screen reader would read it every second.
  const countdown = online && liveState === "closed" && retryAt != null ? ` Retrying in ${Math.max(0, Math.ceil((retryAt - Date.now()) / 1000))} s.` : "";
  if (!message && waiting === 0) return null;
  return (
    <div className={`banner ${message ? "banner-warn" : "banner-info"}`} role="status" aria-live="polite" data-testid="connection-banner">
      {message && <strong>{message}</strong>}
      {countdown && <span aria-hidden="true">{countdown}</span>}
      {message && online && liveState === "closed" && (
        <button type="button" className="link-button" onClick={() => live.retryNow()}>
          Reconnect now
        </button>
      )}
      {waiting > 0 && (
        <span data-testid="pending-count">
          {" "}
          {waiting} {waiting === 1 ? "entry is" : "entries are"} waiting to sync.
        </span>
      )}
    </div>
  );
}
