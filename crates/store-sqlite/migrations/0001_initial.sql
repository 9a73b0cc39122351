-- GlucoSync embedded schema, version 1.
-- Times are UTC milliseconds since the epoch (INTEGER) plus the client's UTC offset in minutes,
-- the same representation the PostgreSQL backend uses. Glucose is mg/dL.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    display_name  TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0,
    settings      TEXT    NOT NULL DEFAULT '{}',
    created_ms    INTEGER NOT NULL
);

-- Browser sessions and personal API tokens. Only hashes of the secrets are kept.
CREATE TABLE credentials (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('session', 'api_token')),
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    csrf_hash    TEXT,
    scopes       TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_used_ms INTEGER,
    expires_ms   INTEGER,
    revoked_ms   INTEGER
);
CREATE INDEX credentials_by_user ON credentials (user_id, kind);

-- The unique index is both the deduplication rule (SPEC §4: same user, kind, time and device
-- is one reading) and the index every per-user time-range query uses.
CREATE TABLE readings (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL,
    time_ms        INTEGER NOT NULL,
    utc_offset_min INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    device         TEXT    NOT NULL,
    value_mgdl     REAL    NOT NULL,
    trend          TEXT,
    created_ms     INTEGER NOT NULL
);
CREATE UNIQUE INDEX readings_identity ON readings (user_id, time_ms, kind, device);

CREATE TABLE treatments (
    user_id        INTEGER NOT NULL,
    id             TEXT    NOT NULL,
    time_ms        INTEGER NOT NULL,
    utc_offset_min INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    units          REAL,
    insulin_type   TEXT,
    insulin_name   TEXT,
    grams          REAL,
    minutes        REAL,
    intensity      TEXT,
    text           TEXT,
    units_per_hour REAL,
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    PRIMARY KEY (user_id, id)
) WITHOUT ROWID;
CREATE INDEX treatments_by_time ON treatments (user_id, time_ms, id);
