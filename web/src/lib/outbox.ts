/**
 * Entries made offline (treatments, fingersticks, and changes to saved treatments) wait in
 * IndexedDB until they reach the server. Each carries the id the server deduplicates on (a treatment's client `id`; a
 * reading is unique by kind, time and device), so sending one twice — a retry after a
 * response was lost, two tabs syncing at once — stores it once.
 */

/**
 * What an entry does: record a treatment or a reading, or change (`treatment-replace`, body
 * `{target, treatment}`) or delete (`treatment-delete`, body `{target}`) a saved treatment.
 * Each is idempotent on the server, so a retry is harmless.
 */
export type OutboxKind = "treatment" | "reading" | "treatment-replace" | "treatment-delete";

export interface OutboxEntry {
  /** Client id: the treatment's `id`, or a key for a reading. */
  id: string;
  /** Whose entry (user id): on a shared device, one person's entries never go to another's account. */
  owner: number;
  kind: OutboxKind;
  body: Record<string, unknown>;
  createdAt: number;
  attempts: number;
  /** Set when the server refused the entry (4xx): it stays for the person to see and discard. */
  rejected?: string;
}

/** What sending one entry gave. */
export type SendOutcome = { ok: true } | { ok: false; retry: boolean; message: string };

const DB_NAME = "glucosync";
const STORE = "outbox";

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

export class Outbox {
  private db: Promise<IDBDatabase>;
  private listeners = new Set<() => void>();
  private flushing: Promise<number> | null = null;

  constructor(factory: IDBFactory = indexedDB, name = DB_NAME) {
    this.db = new Promise((resolve, reject) => {
      const open = factory.open(name, 1);
      open.onupgradeneeded = () => {
        open.result.createObjectStore(STORE, { keyPath: "id" });
      };
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed() {
    for (const l of this.listeners) l();
  }

  async add(owner: number, kind: OutboxKind, body: Record<string, unknown>, id: string = newId()): Promise<OutboxEntry> {
    const entry: OutboxEntry = { id, owner, kind, body: kind === "treatment" ? { ...body, id } : body, createdAt: Date.now(), attempts: 0 };
    const db = await this.db;
    await request(db.transaction(STORE, "readwrite").objectStore(STORE).put(entry));
    this.changed();
    return entry;
  }

  /** `owner`'s entries, oldest first. */
  async list(owner: number): Promise<OutboxEntry[]> {
    const db = await this.db;
    const all = await request(db.transaction(STORE).objectStore(STORE).getAll() as IDBRequest<OutboxEntry[]>);
    return all.filter((e) => e.owner === owner).sort((a, b) => a.createdAt - b.createdAt);
  }

  async remove(id: string): Promise<void> {
    const db = await this.db;
    await request(db.transaction(STORE, "readwrite").objectStore(STORE).delete(id));
    this.changed();
  }

  private async put(entry: OutboxEntry): Promise<void> {
    const db = await this.db;
    await request(db.transaction(STORE, "readwrite").objectStore(STORE).put(entry));
  }

  /**
   * Sends the pending entries oldest first; returns how many were delivered. Stops at the
   * first entry that should be retried (offline, server unavailable), so entries keep their
   * order; an entry the server refuses is marked rejected and skipped from then on. Only
   * `owner`'s entries go (the logged-in person's). One flush at a time: a second call while
   * one runs joins it.
   */
  flush(owner: number, send: (e: OutboxEntry) => Promise<SendOutcome>): Promise<number> {
    if (this.flushing) return this.flushing;
    this.flushing = (async () => {
      let delivered = 0;
      try {
        for (const entry of await this.list(owner)) {
          if (entry.rejected) continue;
          const outcome = await send(entry).catch((e: unknown): SendOutcome => ({ ok: false, retry: true, message: String(e) }));
          if (outcome.ok) {
            await this.remove(entry.id);
            delivered++;
            continue;
          }
          entry.attempts++;
          if (!outcome.retry) entry.rejected = outcome.message;
          await this.put(entry);
          this.changed();
          if (outcome.retry) break;
        }
      } finally {
        this.flushing = null;
      }
      return delivered;
    })();
    return this.flushing;
  }
}

export function newId(): string {
  return crypto.randomUUID();
}
