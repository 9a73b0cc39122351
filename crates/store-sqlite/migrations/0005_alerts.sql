-- Each person's alerts (the book as JSON) and what the evaluator needs to find who is due:
-- `version` grows with every book change and every upload of CGM readings; a person is due
-- when version > evaluated_version or when due_ms has passed.
CREATE TABLE alert_books (
    user_id           INTEGER PRIMARY KEY,
    book              TEXT    NOT NULL DEFAULT '{"alerts":[]}',
    version           INTEGER NOT NULL DEFAULT 0,
    evaluated_version INTEGER NOT NULL DEFAULT 0,
    due_ms            INTEGER
);
CREATE INDEX alert_books_due ON alert_books (due_ms);

-- Leases: which process does a job that exactly one may do at a time (e.g. a shard of the
-- alert timers), until when.
CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_ms INTEGER NOT NULL
);
