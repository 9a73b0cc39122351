/**
 * The live connection: one WebSocket to `/api/v1/ws`, reconnected with exponential backoff
 * and jitter, resuming with `since` (the greatest reading cursor seen) so that the server
 * replays what was missed while offline. Knows nothing of React: screens subscribe to events
 * and to the connection state.
 */

export type LiveState = "connecting" | "open" | "closed";

export interface LiveEvent {
  type: string;
  person?: number;
  cursor?: number | null;
  [key: string]: unknown;
}

/** The delay before reconnect attempt `attempt` (0-based): 1 s doubling to 30 s, with full jitter in its upper half. */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(30_000, 1_000 * 2 ** Math.min(attempt, 10));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Close codes after which reconnecting is pointless until the person logs in again. */
const UNAUTHORIZED_CLOSES = new Set([4401]);

export interface SocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number): void;
}

export interface LiveOptions {
  url: (since: number | null) => string;
  open?: (url: string) => SocketLike;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (t: unknown) => void;
  random?: () => number;
}

export class LiveConnection {
  private socket: SocketLike | null = null;
  private attempt = 0;
  private timer: unknown = null;
  private stopped = true;
  /** Per person, the greatest reading cursor seen (replay after a reconnect starts there). */
  private cursors = new Map<number, number>();
  /** Whose stream the socket carries by itself (the logged-in person); `since` in the URL is theirs. */
  private self: number | null = null;
  private opened = false;
  private subscriptions = new Set<number>();
  private listeners = new Set<(e: LiveEvent) => void>();
  private stateListeners = new Set<(s: LiveState, retryInMs: number | null) => void>();
  state: LiveState = "closed";
  /** When the last message (event or hello) arrived, for the "connection stale" banner. */
  lastMessageAt = 0;

  constructor(private readonly opts: LiveOptions) {}

  start(self?: number): void {
    if (self !== undefined && self !== this.self) {
      this.self = self;
      this.cursors.clear();
    }
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.opened = false;
    if (this.timer != null) (this.opts.clearTimer ?? clearTimeout)(this.timer as number);
    this.timer = null;
    this.socket?.close(1000);
    this.socket = null;
    this.setState("closed", null);
  }

  /** Follow a person one shares with (caregiver view); re-sent after every reconnect. */
  follow(person: number): void {
    this.subscriptions.add(person);
    if (this.state === "open") this.socket?.send(JSON.stringify({ type: "subscribe", person, since: this.cursors.get(person) }));
  }

  unfollow(person: number): void {
    this.subscriptions.delete(person);
    if (this.state === "open") this.socket?.send(JSON.stringify({ type: "unsubscribe", person }));
  }

  onEvent(fn: (e: LiveEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onState(fn: (s: LiveState, retryInMs: number | null) => void): () => void {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }

  /** Reconnect now (the browser came back online, or the tab became visible). */
  retryNow(): void {
    if (this.stopped || this.state === "open" || this.state === "connecting") return;
    if (this.timer != null) (this.opts.clearTimer ?? clearTimeout)(this.timer as number);
    this.timer = null;
    this.connect();
  }

  private connect(): void {
    this.setState("connecting", null);
    const open = this.opts.open ?? ((url: string) => new WebSocket(url) as unknown as SocketLike);
    const socket = open(this.opts.url(this.self != null ? (this.cursors.get(this.self) ?? null) : null));
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.lastMessageAt = Date.now();
      this.setState("open", null);
      for (const person of this.subscriptions) {
        socket.send(JSON.stringify({ type: "subscribe", person, since: this.cursors.get(person) }));
      }
      // Replay covers readings after a cursor; whatever else changed while away (or everything,
      // when no reading had been seen yet) screens reload over REST on this.
      if (this.opened) for (const l of this.listeners) l({ type: "reconnected" });
      this.opened = true;
    };
    socket.onmessage = (ev) => {
      this.lastMessageAt = Date.now();
      if (typeof ev.data !== "string") return;
      let event: LiveEvent;
      try {
        event = JSON.parse(ev.data) as LiveEvent;
      } catch {
        return;
      }
      if (event.type === "reading" && typeof event.cursor === "number" && typeof event.person === "number") {
        this.cursors.set(event.person, Math.max(this.cursors.get(event.person) ?? 0, event.cursor));
      }
      if (event.type === "share_revoked" && typeof event.person === "number") this.subscriptions.delete(event.person);
      for (const l of this.listeners) l(event);
    };
    socket.onerror = () => {};
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (UNAUTHORIZED_CLOSES.has(ev.code)) {
        this.stopped = true;
        this.setState("closed", null);
        return;
      }
      const delay = backoffDelay(this.attempt++, this.opts.random);
      this.setState("closed", delay);
      this.timer = (this.opts.setTimer ?? setTimeout)(() => {
        this.timer = null;
        if (!this.stopped) this.connect();
      }, delay);
    };
  }

  private setState(s: LiveState, retryInMs: number | null): void {
    this.state = s;
    for (const l of this.stateListeners) l(s, retryInMs);
  }
}

/** The WebSocket URL of this origin's live endpoint. */
export function liveUrl(since: number | null): string {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const q = since != null ? `?since=${since}` : "";
  return `${proto}//${location.host}/api/v1/ws${q}`;
}
