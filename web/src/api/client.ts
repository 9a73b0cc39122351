/**
 * The typed API client. Types come from the server's OpenAPI document (`npm run gen:api`
 * writes schema.d.ts; the tests fail when it is stale). Browsers authenticate with the
 * session cookie; unsafe requests echo the CSRF cookie in `X-CSRF-Token`.
 */
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function csrfToken(): string | null {
  const match = document.cookie.match(/(?:^|;\s*)glucosync_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]!) : null;
}

const unauthorizedListeners = new Set<() => void>();

/** Called when the server says the session is gone (expired, logged out elsewhere). */
export function onUnauthorized(fn: () => void): () => void {
  unauthorizedListeners.add(fn);
  return () => unauthorizedListeners.delete(fn);
}

const auth: Middleware = {
  onRequest({ request }) {
    if (UNSAFE.has(request.method)) {
      const token = csrfToken();
      if (token) request.headers.set("X-CSRF-Token", token);
    }
    return request;
  },
  onResponse({ request, response }) {
    if (response.status === 401 && !new URL(request.url).pathname.startsWith("/api/v1/auth/")) {
      for (const l of unauthorizedListeners) l();
    }
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: location.origin, credentials: "same-origin" });
api.use(auth);

/** A problem+json body's message, for showing next to a form. */
export function problemMessage(error: unknown, fallback = "Something went wrong. Try again."): string {
  if (error && typeof error === "object") {
    const e = error as { detail?: string; title?: string; errors?: { field?: string; message?: string }[] };
    const fields = e.errors?.map((f) => (f.field ? `${f.field}: ${f.message}` : f.message)).filter(Boolean);
    if (fields && fields.length > 0) return fields.join("; ");
    if (e.detail) return e.detail;
    if (e.title) return e.title;
  }
  return fallback;
}

/** True when a fetch failed for want of a network (offline, server down) rather than a refusal. */
export function isNetworkError(e: unknown): boolean {
  return e instanceof TypeError;
}
