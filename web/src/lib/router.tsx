/**
 * A small client-side router over the History API, under the app's base path (/app/). The
 * app has a handful of flat screens, so a route is a path; links are real <a> elements (they
 * work with the keyboard, middle-click and screen readers).
 */
import { createContext, useContext, useEffect, useState, type AnchorHTMLAttributes, type MouseEvent } from "react";

export const BASE = "/app";

/** Where an invite's token waits (this tab only) while its recipient logs in or signs up. */
export const INVITE_KEY = "glucosync-invite";

function current(): { path: string; search: URLSearchParams } {
  const raw = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : location.pathname;
  const path = raw === "" ? "/" : raw.replace(/\/+$/, "") || "/";
  return { path, search: new URLSearchParams(location.search) };
}

const RouteContext = createContext(current());

export function navigate(to: string, replace = false): void {
  const url = to.startsWith(BASE) ? to : BASE + (to.startsWith("/") ? to : `/${to}`);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  dispatchEvent(new PopStateEvent("popstate"));
}

export function RouterProvider({ children }: { children: React.ReactNode }) {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const on = () => {
      setRoute(current());
      window.scrollTo(0, 0);
    };
    addEventListener("popstate", on);
    return () => removeEventListener("popstate", on);
  }, []);
  return <RouteContext.Provider value={route}>{children}</RouteContext.Provider>;
}

export function useRoute() {
  return useContext(RouteContext);
}

export function Link({ to, ...rest }: { to: string } & AnchorHTMLAttributes<HTMLAnchorElement>) {
  const href = BASE + to;
  const onClick = (e: MouseEvent<HTMLAnchorElement>) => {
    rest.onClick?.(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(to);
  };
  return <a {...rest} href={href} onClick={onClick} />;
}
