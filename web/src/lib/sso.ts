/**
 * Single sign-on in the app: whether the installation offers it, the login and logout
 * round trips through the provider, and the messages for a login that did not complete.
 */
import { api, type Schemas } from "../api/client";
import { useResource } from "./useResource";

export type SsoStatus = Schemas["SsoStatus"];

/** Set when this tab logged in through the provider: logging out then ends its session too. */
const SSO_SESSION_KEY = "glucosync.sso";

export function useSsoStatus(): SsoStatus | null {
  return useResource(() => api.GET("/api/v1/auth/oidc"), []).data ?? null;
}

/** Leaves for the provider's login; back at `next` (a path of this app) with a session. */
export function startSsoLogin(next: string): void {
  sessionStorage.setItem(SSO_SESSION_KEY, "1");
  location.assign(`/api/v1/auth/oidc/login?next=${encodeURIComponent(`/app${next === "/" ? "/" : next}`)}`);
}

/** After GlucoSync's logout: the provider's too, for a session that came from it. */
export function endSsoSession(): boolean {
  if (sessionStorage.getItem(SSO_SESSION_KEY) !== "1") return false;
  sessionStorage.removeItem(SSO_SESSION_KEY);
  location.assign("/api/v1/auth/oidc/logout");
  return true;
}

export const SSO_ERRORS: Record<string, string> = {
  state: "The sign-in took too long or was started in another window. Please try again.",
  provider: "The single sign-on service did not complete the sign-in. Please try again.",
  token: "The single sign-on service's answer could not be verified. Please try again, or contact your administrator.",
  email_unverified:
    "Your organisation's account has no verified email address. If you have a GlucoSync account, log in with your password and link single sign-on in Settings.",
  conflict: "This single sign-on account is already linked to another GlucoSync account.",
  link_required:
    "A GlucoSync account with this email address exists. Log in with its password, then link single sign-on in Settings (this keeps anyone else from taking over the account).",
  server: "GlucoSync could not complete the sign-in. Please try again in a moment.",
  disabled: "This account is disabled.",
};
