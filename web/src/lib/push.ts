/**
 * Web Push: asks the browser for permission, subscribes with the server's VAPID key and
 * registers the subscription with the server. The service worker shows the notifications.
 */
import { api } from "../api/client";

export type PushStatus = "unsupported" | "denied" | "default" | "subscribed" | "not-subscribed";

export function pushSupported(): boolean {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

export async function pushStatus(): Promise<PushStatus> {
  if (!pushSupported()) return "unsupported";
  if (Notification.permission === "denied") return "denied";
  const reg = await navigator.serviceWorker.getRegistration("/app/");
  const sub = await reg?.pushManager.getSubscription();
  if (sub) {
    // The browser's subscription may belong to whoever used this device before: it counts
    // only if the server has it for the person logged in now.
    const mine = await api.GET("/api/v1/push/subscriptions");
    if (mine.data?.some((s) => s.endpoint === sub.endpoint)) return "subscribed";
  }
  return Notification.permission === "default" ? "default" : "not-subscribed";
}

/** base64url (as the server sends the key) to bytes, for `applicationServerKey`. */
export function base64UrlToBytes(s: string): Uint8Array<ArrayBuffer> {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4);
  const raw = atob(b64);
  const out = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

/** The whole flow; returns the new status or throws with a message for the person. */
export async function enablePush(): Promise<PushStatus> {
  if (!pushSupported()) return "unsupported";
  const permission = await Notification.requestPermission();
  if (permission !== "granted") return permission === "denied" ? "denied" : "default";
  const reg = await navigator.serviceWorker.ready;
  const key = await api.GET("/api/v1/push/vapid-public-key");
  if (!key.data) throw new Error("The server has no push key.");
  const sub =
    (await reg.pushManager.getSubscription()) ??
    (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: base64UrlToBytes(key.data.public_key) }));
  const json = sub.toJSON() as { endpoint: string; keys: { p256dh: string; auth: string } };
  const r = await api.POST("/api/v1/push/subscriptions", { body: { endpoint: json.endpoint, keys: json.keys } });
  if (!r.response.ok) throw new Error("The server refused this device's subscription.");
  return "subscribed";
}

export async function disablePush(): Promise<PushStatus> {
  const reg = await navigator.serviceWorker.getRegistration("/app/");
  const sub = await reg?.pushManager.getSubscription();
  if (sub) {
    const list = await api.GET("/api/v1/push/subscriptions");
    const mine = list.data?.find((s) => s.endpoint === sub.endpoint);
    if (mine) await api.DELETE("/api/v1/push/subscriptions/{id}", { params: { path: { id: mine.id } } });
    await sub.unsubscribe();
  }
  return pushStatus();
}
