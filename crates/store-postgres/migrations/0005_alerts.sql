-- Each person's alerts (the book as JSON) and what the evaluator needs to find who is due:
-- `version` grows with every book change and every upload of CGM readings; a person is due
-- when version > evaluated_version or when due_ms has passed. user_id is the key (the
-- distribution column).
CREATE TABLE alert_books (
    user_id           BIGINT PRIMARY KEY,
    book              TEXT   NOT NULL DEFAULT '{"alerts":[]}',
    version           BIGINT NOT NULL DEFAULT 0,
    evaluated_version BIGINT NOT NULL DEFAULT 0,
    due_ms            BIGINT
);
CREATE INDEX alert_books_due ON alert_books (due_ms);
CREATE INDEX alert_books_unevaluated ON alert_books (user_id) WHERE version > evaluated_version;

-- Leases: which replica does a job that exactly one may do at a time (e.g. a shard of the
-- alert timers), until when. A reference table under Citus.
CREATE TABLE leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_ms BIGINT NOT NULL
);
