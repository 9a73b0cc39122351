import { Component, lazy, Suspense, useEffect, type ReactNode } from "react";
import { INVITE_KEY, navigate, RouterProvider, useRoute } from "./lib/router";
import { SessionProvider, useSession } from "./lib/session";
import { Login, Signup } from "./screens/Auth";
import { Dashboard } from "./screens/Dashboard";

// The dashboard ships in the first bundle; the other screens load when opened.
const Logbook = lazy(() => import("./screens/Logbook"));
const Reports = lazy(() => import("./screens/Reports"));
const Insights = lazy(() => import("./screens/Insights"));
const Alerts = lazy(() => import("./screens/Alerts"));
const Sharing = lazy(() => import("./screens/Sharing"));
const Following = lazy(() => import("./screens/Following"));
const Settings = lazy(() => import("./screens/Settings"));
const AcceptInvite = lazy(() => import("./screens/AcceptInvite"));

const PUBLIC = new Set(["/login", "/signup"]);


function Screens() {
  const { path } = useRoute();
  const { profile, checking } = useSession();
  useEffect(() => {
    if (checking) return;
    if (!profile && !PUBLIC.has(path)) {
      // An invite's token is in the fragment so that it never reaches a server: it waits in
      // this tab's storage, not in the login URL's query.
      if (path === "/invite" && location.hash.length > 1) sessionStorage.setItem(INVITE_KEY, location.hash.slice(1));
      const back = path === "/" ? "" : `?next=${encodeURIComponent(path + location.search)}`;
      navigate(`/login${back}`, true);
    } else if (profile && PUBLIC.has(path)) {
      navigate("/", true);
    }
  }, [profile, checking, path]);
  if (checking) return <p className="loading-page">Loading…</p>;
  if (!profile) {
    return path === "/signup" ? <Signup /> : <Login />;
  }
  const screen = (() => {
    switch (path) {
      case "/":
        return <Dashboard />;
      case "/logbook":
        return <Logbook />;
      case "/reports":
        return <Reports />;
      case "/insights":
        return <Insights />;
      case "/alerts":
        return <Alerts />;
      case "/sharing":
        return <Sharing />;
      case "/following":
        return <Following />;
      case "/settings":
        return <Settings />;
      case "/invite":
        return <AcceptInvite />;
      default:
        return <Dashboard />;
    }
  })();
  return (
    <ScreenErrorBoundary key={path}>
      <Suspense fallback={<p className="loading-page">Loading…</p>}>{screen}</Suspense>
    </ScreenErrorBoundary>
  );
}

/**
 * A screen that fails to load (its chunk gone after an update, no network for it) says so and
 * offers a reload, instead of blanking the whole app.
 */
class ScreenErrorBoundary extends Component<{ children: ReactNode }, { failed: boolean }> {
  state = { failed: false };
  static getDerivedStateFromError() {
    return { failed: true };
  }
  render() {
    if (!this.state.failed) return this.props.children;
    return (
      <main id="main" className="loading-page">
        <h1>This screen could not be loaded</h1>
        <p>GlucoSync may have been updated, or the connection dropped.</p>
        <button type="button" className="primary" onClick={() => location.reload()}>
          Reload
        </button>{" "}
        <a href="/app/">Go to the dashboard</a>
      </main>
    );
  }
}

export function App() {
  return (
    <RouterProvider>
      <SessionProvider>
        <Screens />
      </SessionProvider>
    </RouterProvider>
  );
}
