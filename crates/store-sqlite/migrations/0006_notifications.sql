-- Web Push subscriptions: one per browser or phone of a person.
CREATE TABLE push_subscriptions (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    endpoint   TEXT    NOT NULL,
    p256dh     TEXT    NOT NULL,
    auth       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX push_subscriptions_endpoint ON push_subscriptions (user_id, endpoint);

-- The outbox and delivery log of alert notifications: written in the transaction that saves
-- the alert (so a notification cannot be lost between the two), sent by the replica running
-- the person's alert timers, kept as the log of who was told what, when, and how it went.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    person_id       INTEGER NOT NULL,
    recipient_id    INTEGER NOT NULL,
    channel         TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    created_ms      INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    done_ms         INTEGER
);
CREATE INDEX deliveries_person ON deliveries (person_id, created_ms);
CREATE INDEX deliveries_pending ON deliveries (next_attempt_ms) WHERE status = 'pending';

-- How a follower wants to hear of the alerts of the person they follow.
ALTER TABLE shares ADD COLUMN notify_push INTEGER NOT NULL DEFAULT 1;
ALTER TABLE shares ADD COLUMN notify_email INTEGER NOT NULL DEFAULT 0;

-- Secrets of the installation shared by every replica (the VAPID key of Web Push).
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
