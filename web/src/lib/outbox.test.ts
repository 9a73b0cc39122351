import { IDBFactory } from "fake-indexeddb";
import { describe, expect, it } from "vitest";
import { Outbox, type OutboxEntry, type SendOutcome } from "./outbox";

/** A server that stores treatments by id, as GlucoEngine does (a repeated id is a duplicate). */
class FakeServer {
  stored = new Map<string, Record<string, unknown>>();
  up = true;
  loseResponses = 0;
  async send(e: OutboxEntry): Promise<SendOutcome> {
    if (!this.up) throw new TypeError("Failed to fetch");
    if (e.body.grams === -1) return { ok: false, retry: false, message: "grams: must be positive" };
    this.stored.set(String(e.body.id ?? e.id), e.body);
    if (this.loseResponses > 0) {
      this.loseResponses--;
      throw new TypeError("connection reset");
    }
    return { ok: true };
  }
}

const fresh = () => new Outbox(new IDBFactory(), `test-${Math.random()}`);

describe("Outbox", () => {
  it("keeps entries made offline and delivers them in order when back online", async () => {
    const outbox = fresh();
    const server = new FakeServer();
    server.up = false;
    await outbox.add(1, "treatment", { time: "2026-11-27T08:00:00Z", kind: "carbs", grams: 30 }, "a");
    await outbox.add(1, "treatment", { time: "2026-11-27T08:05:00Z", kind: "insulin", units: 3 }, "b");
    expect(await outbox.flush(1, (e) => server.send(e))).toBe(0);
    expect((await outbox.list(1)).map((e) => e.id)).toEqual(["a", "b"]);
    server.up = true;
    expect(await outbox.flush(1, (e) => server.send(e))).toBe(2);
    expect(await outbox.list(1)).toEqual([]);
    expect([...server.stored.keys()]).toEqual(["a", "b"]);
  });

  it("carries its id in a treatment's body, so a retry after a lost response stores it once", async () => {
    const outbox = fresh();
    const server = new FakeServer();
    await outbox.add(1, "treatment", { time: "t", kind: "carbs", grams: 20 }, "once");
    server.loseResponses = 1;
    await outbox.flush(1, (e) => server.send(e));
    expect((await outbox.list(1)).map((e) => e.id)).toEqual(["once"]);
    await outbox.flush(1, (e) => server.send(e));
    expect(await outbox.list(1)).toEqual([]);
    expect(server.stored.size).toBe(1);
    expect(server.stored.get("once")?.id).toBe("once");
  });

  it("marks an entry the server refuses and goes on with the rest", async () => {
    const outbox = fresh();
    const server = new FakeServer();
    await outbox.add(1, "treatment", { time: "t", kind: "carbs", grams: -1 }, "bad");
    await outbox.add(1, "treatment", { time: "t", kind: "carbs", grams: 10 }, "good");
    expect(await outbox.flush(1, (e) => server.send(e))).toBe(1);
    const left = await outbox.list(1);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatchObject({ id: "bad", rejected: "grams: must be positive", attempts: 1 });
    // A refused entry is not sent again.
    expect(await outbox.flush(1, (e) => server.send(e))).toBe(0);
  });

  it("sends only the logged-in person's entries (a shared device)", async () => {
    const outbox = fresh();
    const server = new FakeServer();
    await outbox.add(1, "treatment", { time: "t", kind: "carbs", grams: 10 }, "mine");
    await outbox.add(2, "treatment", { time: "t", kind: "carbs", grams: 20 }, "theirs");
    expect((await outbox.list(2)).map((e) => e.id)).toEqual(["theirs"]);
    expect(await outbox.flush(2, (e) => server.send(e))).toBe(1);
    expect([...server.stored.keys()]).toEqual(["theirs"]);
    expect((await outbox.list(1)).map((e) => e.id)).toEqual(["mine"]);
  });

  it("runs one flush at a time: concurrent syncs (two triggers at once) send each entry once", async () => {
    const outbox = fresh();
    let sends = 0;
    await outbox.add(1, "reading", { time: "t", value: 100, kind: "meter" }, "m1");
    const send = async () => {
      sends++;
      await new Promise((r) => setTimeout(r, 10));
      return { ok: true } as const;
    };
    const [a, b] = await Promise.all([outbox.flush(1, send), outbox.flush(1, send)]);
    expect(a).toBe(1);
    expect(b).toBe(1);
    expect(sends).toBe(1);
  });
});
