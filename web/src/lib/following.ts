/** The people the caller follows, as screens that show someone else's data name them. */
import { api, type Schemas } from "../api/client";
import { useResource } from "./useResource";

/** A followed person's name as the caregiver knows them. */
export function followedName(s: Schemas["FollowedOut"]): string {
  return s.owner_name || s.owner_email || `Person ${s.owner_id}`;
}

/** The share through which the caller sees `person` (nothing is read for their own data). */
export function useFollowed(person: number | undefined): Schemas["FollowedOut"] | undefined {
  const following = useResource(
    () => (person ? api.GET("/api/v1/following") : Promise.resolve({ data: [], response: new Response() })),
    [person],
  );
  return person ? following.data?.find((f) => f.owner_id === person) : undefined;
}
