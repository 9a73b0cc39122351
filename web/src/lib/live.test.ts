import { describe, expect, it } from "vitest";
import { backoffDelay, LiveConnection, type SocketLike } from "./live";

class FakeSocket implements SocketLike {
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: string[] = [];
  closed = false;
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.closed = true;
  }
  open() {
    this.onopen?.({});
  }
  message(obj: unknown) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
  drop(code = 1006) {
    this.onclose?.({ code });
  }
}

function harness() {
  const sockets: FakeSocket[] = [];
  const timers: { fn: () => void; ms: number }[] = [];
  const conn = new LiveConnection({
    url: (since) => `ws://test/api/v1/ws${since != null ? `?since=${since}` : ""}`,
    open: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    setTimer: (fn, ms) => {
      timers.push({ fn, ms });
      return timers.length;
    },
    clearTimer: () => {},
    random: () => 0.5,
  });
  return { conn, sockets, timers };
}

describe("backoff", () => {
  it("doubles from about a second up to 30 s, with jitter in the upper half", () => {
    expect(backoffDelay(0, () => 0)).toBe(500);
    expect(backoffDelay(0, () => 1)).toBe(1_000);
    expect(backoffDelay(3, () => 1)).toBe(8_000);
    expect(backoffDelay(20, () => 1)).toBe(30_000);
    expect(backoffDelay(20, () => 0)).toBe(15_000);
  });
});

describe("LiveConnection", () => {
  it("reconnects after a drop with the greatest cursor seen, so missed readings are replayed", () => {
    const { conn, sockets, timers } = harness();
    const events: string[] = [];
    conn.onEvent((e) => events.push(e.type));
    conn.start(7);
    sockets[0]!.open();
    sockets[0]!.message({ type: "reading", person: 7, cursor: 1_000, readings: [] });
    sockets[0]!.message({ type: "reading", person: 7, cursor: 3_000, readings: [] });
    sockets[0]!.message({ type: "reading", person: 7, cursor: 2_000, readings: [], replay: true });
    sockets[0]!.message({ type: "reading", person: 42, cursor: 9_000, readings: [] });
    sockets[0]!.drop();
    expect(conn.state).toBe("closed");
    expect(timers).toHaveLength(1);
    timers[0]!.fn();
    expect(sockets[1]!.url).toBe("ws://test/api/v1/ws?since=3000");
    sockets[1]!.open();
    // Screens are told to reload what replay does not cover.
    expect(events).toEqual(["reading", "reading", "reading", "reading", "reconnected"]);
  });

  it("backs off further with each failed attempt and resets once connected", () => {
    const { conn, sockets, timers } = harness();
    conn.start();
    sockets[0]!.drop();
    timers[0]!.fn();
    sockets[1]!.drop();
    timers[1]!.fn();
    expect(timers.map((t) => t.ms)).toEqual([backoffDelay(0, () => 0.5), backoffDelay(1, () => 0.5)]);
    sockets[2]!.open();
    sockets[2]!.drop();
    expect(timers[2]!.ms).toBe(backoffDelay(0, () => 0.5));
  });

  it("re-subscribes to followed people after a reconnect", () => {
    const { conn, sockets, timers } = harness();
    conn.start(7);
    conn.follow(42);
    sockets[0]!.open();
    expect(sockets[0]!.sent.map((s) => JSON.parse(s))).toEqual([{ type: "subscribe", person: 42 }]);
    sockets[0]!.message({ type: "reading", person: 42, cursor: 5_000, readings: [] });
    sockets[0]!.drop();
    timers[0]!.fn();
    sockets[1]!.open();
    // Each person resumes from their own cursor; the own stream has none yet.
    expect(sockets[1]!.url).toBe("ws://test/api/v1/ws");
    expect(JSON.parse(sockets[1]!.sent[0]!)).toEqual({ type: "subscribe", person: 42, since: 5_000 });
  });

  it("stops following someone whose share was revoked", () => {
    const { conn, sockets, timers } = harness();
    conn.start(7);
    conn.follow(42);
    sockets[0]!.open();
    sockets[0]!.message({ type: "share_revoked", person: 42 });
    sockets[0]!.drop(4403);
    timers[0]!.fn();
    sockets[1]!.open();
    expect(sockets[1]!.sent).toEqual([]);
  });

  it("stays closed after stop, and ignores garbage frames", () => {
    const { conn, sockets, timers } = harness();
    const events: unknown[] = [];
    conn.onEvent((e) => events.push(e));
    conn.start();
    sockets[0]!.open();
    sockets[0]!.onmessage?.({ data: "not json" });
    conn.stop();
    sockets[0]!.drop();
    expect(timers).toHaveLength(0);
    expect(events).toHaveLength(0);
    expect(conn.state).toBe("closed");
  });
});
