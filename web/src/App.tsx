import { lazy, Suspense, useEffect } from "react";
import { navigate, RouterProvider, useRoute } from "./lib/router";
import { SessionProvider, useSession } from "./lib/session";
import { Login, Signup } from "./screens/Auth";
import { Dashboard } from "./screens/Dashboard";

// The dashboard ships in the first bundle; the other screens load when opened.
const Logbook = lazy(() => import("./screens/Logbook"));
const Reports = lazy(() => import("./screens/Reports"));
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
      const back = path === "/" ? "" : `?next=${encodeURIComponent(path + location.search + location.hash)}`;
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
  return <Suspense fallback={<p className="loading-page">Loading…</p>}>{screen}</Suspense>;
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
