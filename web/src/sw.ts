/// <reference lib="webworker" />
/**
 * GlucoSync's service worker: precaches the app shell so the app opens offline, keeps the
 * last answer of every API read so the last data stays viewable offline, and shows alert
 * notifications pushed by the server (with acknowledge and snooze actions).
 *
 * Self-contained on purpose (no imports): it is built as its own entry at /app/sw.js.
 */
export {};
declare const self: ServiceWorkerGlobalScope & { __PRECACHE__: { version: string; files: string[] } };

const PRECACHE = self.__PRECACHE__;
const SHELL_CACHE = `glucosync-shell-${PRECACHE.version}`;
const DATA_CACHE = "glucosync-data-v1";
const SCOPE = new URL(self.registration.scope);

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(SHELL_CACHE);
      await cache.addAll(PRECACHE.files.map((f) => new URL(f, SCOPE).toString()));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith("glucosync-shell-") && name !== SHELL_CACHE) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

/** API reads whose last answer is kept for offline viewing (not live streams, not auth). */
function cacheableApi(url: URL): boolean {
  return (
    url.pathname.startsWith("/api/v1/") &&
    !url.pathname.startsWith("/api/v1/ws") &&
    !url.pathname.startsWith("/api/v1/events") &&
    !url.pathname.startsWith("/api/v1/auth/")
  );
}

/**
 * Cached answers are keyed without the time range's exact instants: a dashboard asks for
 * "the last 3 hours" with a new `to` every time, and offline the newest cached answer for
 * that kind of request is the best there is.
 */
function dataKey(url: URL): string {
  const key = new URL(url);
  for (const p of ["from", "to"]) key.searchParams.delete(p);
  const from = url.searchParams.get("from");
  const to = url.searchParams.get("to");
  if (from && to) key.searchParams.set("span", String(Math.round((Date.parse(to) - Date.parse(from)) / 60_000)));
  return key.toString();
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.method === "GET" && cacheableApi(url)) {
    event.respondWith(networkFirst(request, dataKey(url)));
    return;
  }
  if (request.method !== "GET" || !url.pathname.startsWith(SCOPE.pathname)) return;
  if (request.mode === "navigate") {
    // Client-side routes: the network's index.html when reachable, else the precached one.
    event.respondWith(
      fetch(request).catch(async () => (await caches.match(new URL("./", SCOPE).toString())) ?? Response.error()),
    );
    return;
  }
  event.respondWith((async () => (await caches.match(request)) ?? fetch(request))());
});

/** A request the network has not answered in this long is answered from the cache (a dead Wi-Fi that never errors). */
const NETWORK_TIMEOUT_MS = 8_000;

async function networkFirst(request: Request, key: string): Promise<Response> {
  const cache = await caches.open(DATA_CACHE);
  try {
    const response = await Promise.race([
      fetch(request),
      new Promise<never>((_, reject) => setTimeout(() => reject(new TypeError("network timeout")), NETWORK_TIMEOUT_MS)),
    ]);
    if (response.ok) await cache.put(key, response.clone());
    else if (response.status === 401) await cache.delete(key);
    return response;
  } catch (e) {
    const cached = await cache.match(key);
    if (cached) {
      const headers = new Headers(cached.headers);
      headers.set("X-GlucoSync-Offline", "1");
      return new Response(cached.body, { status: cached.status, headers });
    }
    throw e;
  }
}

self.addEventListener("message", (event) => {
  // Logging in or out forgets the cached data: the next person on this device must never see
  // the previous one's.
  if (event.data === "forget-data") event.waitUntil(caches.delete(DATA_CACHE));
});

interface AlertPush {
  type: "alert";
  person: number;
  kind: string;
  title: string;
  body: string;
  reason: string;
  urgent: boolean;
  audible: boolean;
  tag: string;
}

self.addEventListener("push", (event) => {
  let data: AlertPush | null = null;
  try {
    data = event.data?.json() as AlertPush;
  } catch {
    data = null;
  }
  if (!data || data.type !== "alert") return;
  const push = data;
  event.waitUntil(
    (async () => {
      if (push.reason === "resolved" || push.reason === "acknowledged" || push.reason === "snoozed") {
        // Taken care of (here or on another device): take the notification down.
        for (const n of await self.registration.getNotifications({ tag: push.tag })) n.close();
        return;
      }
      await self.registration.showNotification(push.title, {
        body: push.body,
        tag: push.tag,
        icon: new URL("icons/icon-192.png", SCOPE).toString(),
        badge: new URL("icons/icon-192.png", SCOPE).toString(),
        requireInteraction: push.urgent,
        // A repeat of an alert replaces its notification (same tag) and must sound again.
        renotify: push.audible,
        silent: !push.audible,
        data: { person: push.person, kind: push.kind },
        actions: [
          { action: "acknowledge", title: "Acknowledge" },
          { action: "snooze", title: "Snooze 30 min" },
        ],
      } as NotificationOptions);
    })(),
  );
});

self.addEventListener("notificationclick", (event) => {
  const { person, kind } = (event.notification.data ?? {}) as { person?: number; kind?: string };
  event.notification.close();
  event.waitUntil(
    (async () => {
      if (kind && (event.action === "acknowledge" || event.action === "snooze")) {
        if (await actOnAlert(event.action, kind, person)) return;
      }
      const target = new URL(`alerts${person ? `?person=${person}` : ""}`, SCOPE).toString();
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const open = windows[0];
      if (open) {
        await open.focus();
        await open.navigate(target).catch(() => undefined);
      } else {
        await self.clients.openWindow(target);
      }
    })(),
  );
});

/** Acknowledges or snoozes from the notification itself; false when it could not (then the app opens). */
async function actOnAlert(action: "acknowledge" | "snooze", kind: string, person?: number): Promise<boolean> {
  const store = (self as unknown as { cookieStore?: { get(name: string): Promise<{ value: string } | null> } }).cookieStore;
  const csrf = store ? (await store.get("glucosync_csrf"))?.value : undefined;
  if (!csrf) return false;
  const query = person ? `?person=${person}` : "";
  const response = await fetch(`/api/v1/alerts/${encodeURIComponent(kind)}/${action}${query}`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
    body: action === "snooze" ? JSON.stringify({ minutes: 30 }) : "{}",
  }).catch(() => null);
  return response?.ok ?? false;
}

/** The push service replaced the subscription (expiry, key rotation): register the new one, or alerts would silently stop. */
self.addEventListener("pushsubscriptionchange", (event) => {
  const change = event as Event & { oldSubscription?: PushSubscription; newSubscription?: PushSubscription; waitUntil(p: Promise<unknown>): void };
  change.waitUntil(
    (async () => {
      const options = change.oldSubscription?.options;
      const subscription =
        change.newSubscription ?? (options ? await self.registration.pushManager.subscribe(options) : null);
      if (!subscription) return;
      const store = (self as unknown as { cookieStore?: { get(name: string): Promise<{ value: string } | null> } }).cookieStore;
      const csrf = store ? (await store.get("glucosync_csrf"))?.value : undefined;
      if (!csrf) return;
      const json = subscription.toJSON();
      await fetch("/api/v1/push/subscriptions", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
        body: JSON.stringify({ endpoint: json.endpoint, keys: json.keys }),
      });
    })(),
  );
});
