/**
 * Loading one API resource into a screen: the value, whether it is loading, the error, a
 * reload, and whether the answer came from the offline cache (the service worker marks it).
 */
import { useCallback, useEffect, useRef, useState } from "react";

export interface Loaded<T> {
  data: T | undefined;
  error: string | null;
  loading: boolean;
  /** The service worker answered from its cache: the network was unreachable. */
  offline: boolean;
  /** The HTTP status of the last answer (404: there is none of it yet). */
  status: number | null;
  reload: () => void;
  set: (update: (old: T | undefined) => T | undefined) => void;
}

export interface Fetched<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

export function useResource<T>(load: () => Promise<Fetched<T>>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [offline, setOffline] = useState(false);
  const [status, setStatus] = useState<number | null>(null);
  const generation = useRef(0);
  const run = useCallback(() => {
    const mine = ++generation.current;
    setLoading(true);
    load()
      .then((r) => {
        if (mine !== generation.current) return;
        setStatus(r.response.status);
        if (r.response.status === 404) {
          // Nothing of it yet (no reading, no forecast): empty, not an error.
          setData(undefined);
          setError(null);
        } else if (r.error !== undefined || !r.response.ok) {
          setError(problemText(r.error));
        } else {
          setData(r.data);
          setError(null);
        }
        setOffline(r.response.headers.get("X-GlucoSync-Offline") === "1");
      })
      .catch(() => {
        if (mine !== generation.current) return;
        setOffline(true);
        setError("You are offline and this has not been loaded before.");
      })
      .finally(() => {
        if (mine === generation.current) setLoading(false);
      });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  useEffect(run, [run]);
  return { data, error, loading, offline, status, reload: run, set: (u) => setData(u) };
}

function problemText(e: unknown): string {
  if (e && typeof e === "object" && "detail" in e) return String((e as { detail: unknown }).detail);
  return "Could not load this. Try again.";
}

/**
 * A newest-first log read a page at a time (`next_cursor`): the first page, and `more()` for
 * the next. Reloading starts again from the first page.
 */
export function usePagedLog<T>(load: (cursor?: string) => Promise<Fetched<{ items: T[]; next_cursor?: string | null }>>, deps: unknown[]) {
  const first = useResource(() => load(), deps);
  const [older, setOlder] = useState<T[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loadingMore, setLoadingMore] = useState(false);
  useEffect(() => {
    setOlder([]);
    setCursor(first.data?.next_cursor ?? null);
  }, [first.data]);
  const more = useCallback(async () => {
    if (!cursor) return;
    setLoadingMore(true);
    try {
      const page = await load(cursor);
      if (page.data) {
        const next = page.data;
        setOlder((o) => [...o, ...next.items]);
        setCursor(next.next_cursor ?? null);
      }
    } finally {
      setLoadingMore(false);
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [cursor, ...deps]);
  return { ...first, items: [...(first.data?.items ?? []), ...older], hasMore: cursor != null, more, loadingMore };
}
