/**
 * Who is logged in, the live connection and the offline outbox: the app-wide state. The
 * profile is read from `/api/v1/me` (the session cookie authenticates); offline, the service
 * worker's cached copy keeps the app usable.
 */
import { createContext, useCallback, useContext, useEffect, useMemo, useState } from "react";
import { api, onUnauthorized, type Schemas } from "../api/client";
import { LiveConnection, liveUrl, type LiveState } from "./live";
import { Outbox, type OutboxEntry, type SendOutcome } from "./outbox";
import type { GlucoseUnit, Targets } from "./glucose";
import { disablePush } from "./push";
import { endSsoSession } from "./sso";

/** The next person on this device must not get this person's alerts: the device's push subscription goes with the session. */
async function unsubscribePushOnLogout(): Promise<void> {
  await disablePush().catch(() => undefined);
}

export type Profile = Schemas["Profile"];

/** Empties the service worker's copy of API answers (at login, logout and session expiry). */
export function forgetCachedData(): void {
  navigator.serviceWorker?.controller?.postMessage("forget-data");
}

interface SessionValue {
  profile: Profile | null;
  /** Still finding out whether someone is logged in. */
  checking: boolean;
  setProfile: (p: Profile | null) => void;
  logout: () => Promise<void>;
  live: LiveConnection;
  liveState: LiveState;
  /** When the live connection tries again (epoch ms), while it is down. */
  retryAt: number | null;
  /** Since when the live connection is in its current state (epoch ms). */
  liveSince: number;
  online: boolean;
  outbox: Outbox;
  pending: OutboxEntry[];
  syncNow: () => Promise<void>;
  unit: GlucoseUnit;
  targets: Targets;
}

const SessionContext = createContext<SessionValue | null>(null);

export function useSession(): SessionValue {
  const s = useContext(SessionContext);
  if (!s) throw new Error("useSession outside SessionProvider");
  return s;
}

/** Sends one outbox entry to the API. */
async function sendEntry(e: OutboxEntry): Promise<SendOutcome> {
  const target = String(e.body.target ?? "");
  const { response, error } = await (() => {
    switch (e.kind) {
      case "treatment":
        return api.POST("/api/v1/treatments", { body: e.body as Schemas["TreatmentInput"] });
      case "reading":
        return api.POST("/api/v1/readings", { body: e.body as Schemas["ReadingInput"] });
      case "treatment-replace":
        return api.PUT("/api/v1/treatments/{id}", { params: { path: { id: target } }, body: e.body.treatment as Schemas["TreatmentReplace"] });
      case "treatment-delete":
        return api.DELETE("/api/v1/treatments/{id}", { params: { path: { id: target } } });
    }
  })();
  // Deleting what is gone already is done.
  if (response.ok || (e.kind === "treatment-delete" && response.status === 404)) return { ok: true };
  const retry = response.status >= 500 || response.status === 429 || response.status === 401;
  const message =
    e.kind === "treatment-replace" && response.status === 404
      ? "the entry was deleted meanwhile"
      : error && typeof error === "object" && "detail" in error
        ? String(error.detail)
        : `HTTP ${response.status}`;
  return { ok: false, retry, message };
}

export function SessionProvider({ children }: { children: React.ReactNode }) {
  const [profile, setProfile] = useState<Profile | null>(null);
  const [checking, setChecking] = useState(true);
  const [liveState, setLiveState] = useState<LiveState>("closed");
  const [retryAt, setRetryAt] = useState<number | null>(null);
  const [liveSince, setLiveSince] = useState(() => Date.now());
  const [online, setOnline] = useState(navigator.onLine);
  const [pending, setPending] = useState<OutboxEntry[]>([]);
  const live = useMemo(() => new LiveConnection({ url: liveUrl }), []);
  const outbox = useMemo(() => new Outbox(), []);

  useEffect(() => {
    api
      .GET("/api/v1/me")
      .then(({ data }) => setProfile(data ?? null))
      .catch(() => setProfile(null))
      .finally(() => setChecking(false));
    return onUnauthorized(() => {
      forgetCachedData();
      setProfile(null);
    });
  }, []);

  useEffect(() => {
    let failures = 0;
    return live.onState((s, retry) => {
      setLiveState(s);
      setLiveSince(Date.now());
      setRetryAt(retry == null ? null : Date.now() + retry);
      if (s === "open") failures = 0;
      // A handshake refused for an expired session looks like any dropped connection: ask the
      // API, whose 401 logs the app out.
      else if (s === "closed" && retry != null && ++failures % 3 === 0) void api.GET("/api/v1/me").catch(() => undefined);
    });
  }, [live]);

  useEffect(() => {
    if (profile) live.start(profile.id);
    else live.stop();
  }, [profile, live]);

  const owner = profile?.id;
  const syncNow = useCallback(async () => {
    if (owner == null) return;
    await outbox.flush(owner, sendEntry);
    setPending(await outbox.list(owner));
  }, [outbox, owner]);

  useEffect(() => {
    const refresh = () => void (owner == null ? setPending([]) : outbox.list(owner).then(setPending));
    refresh();
    return outbox.onChange(refresh);
  }, [outbox, owner]);

  useEffect(() => {
    const up = () => {
      setOnline(true);
      live.retryNow();
      if (profile) void syncNow();
    };
    const down = () => setOnline(false);
    addEventListener("online", up);
    addEventListener("offline", down);
    const visible = () => {
      if (document.visibilityState === "visible") up();
    };
    document.addEventListener("visibilitychange", visible);
    if (profile && navigator.onLine) void syncNow();
    // A failed sync (server briefly down) is retried every 30 s while entries wait.
    const timer = setInterval(() => {
      if (profile && navigator.onLine) void syncNow();
    }, 30_000);
    return () => {
      removeEventListener("online", up);
      removeEventListener("offline", down);
      document.removeEventListener("visibilitychange", visible);
      clearInterval(timer);
    };
  }, [live, profile, syncNow]);

  const logout = useCallback(async () => {
    const waiting = owner == null ? 0 : (await outbox.list(owner)).filter((e) => !e.rejected).length;
    if (
      waiting > 0 &&
      !confirm(`${waiting} ${waiting === 1 ? "entry has" : "entries have"} not reached the server yet. They stay on this device and sync when you log in again here. Log out?`)
    )
      return;
    await unsubscribePushOnLogout();
    await api.POST("/api/v1/auth/logout").catch(() => undefined);
    forgetCachedData();
    // A session from single sign-on ends at the provider too (the page leaves for it).
    if (endSsoSession()) return;
    setProfile(null);
  }, [outbox, owner]);

  const settings = profile?.settings;
  const value: SessionValue = {
    profile,
    checking,
    setProfile,
    logout,
    live,
    liveState,
    retryAt,
    liveSince,
    online,
    outbox,
    pending,
    syncNow,
    unit: (settings?.display_unit as GlucoseUnit | undefined) ?? "mg/dL",
    targets: {
      urgentLow: settings?.urgent_low_mgdl ?? 54,
      low: settings?.target_low_mgdl ?? 70,
      high: settings?.target_high_mgdl ?? 180,
      veryHigh: 250,
    },
  };
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}
