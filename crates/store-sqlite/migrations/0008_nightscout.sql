-- Nightscout compatibility (docs/nightscout.md).
-- Each person's Nightscout site: its handle in URLs (/ns/<handle>), the SHA-256 of the SHA-1 of
-- its API secret (uploaders send the SHA-1 in `api-secret`, so the SHA-1 is itself a credential
-- and is not stored), and the secret sealed with the installation's key (settings show it).
CREATE TABLE nightscout_sites (
    user_id       INTEGER PRIMARY KEY,
    handle        TEXT    NOT NULL,
    secret_hash   TEXT    NOT NULL,
    secret_sealed TEXT    NOT NULL,
    public_read   INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);
CREATE UNIQUE INDEX nightscout_sites_handle ON nightscout_sites (handle);
CREATE UNIQUE INDEX nightscout_sites_secret ON nightscout_sites (secret_hash);

-- Readings are rebuilt with AUTOINCREMENT: SQLite otherwise hands the id of a deleted newest
-- reading to the next one, and a client holding the old id (Nightscout's `_id`, API v3's
-- tombstones, an offline PWA's pending delete) would then act on a different reading. With
-- `extra`: the fields of a Nightscout upload GlucoSync does not model, as a JSON object,
-- returned with the record so uploaders round-trip their own fields.
CREATE TABLE readings_v8 (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        INTEGER NOT NULL,
    time_ms        INTEGER NOT NULL,
    utc_offset_min INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    device         TEXT    NOT NULL,
    value_mgdl     REAL    NOT NULL,
    trend          TEXT,
    created_ms     INTEGER NOT NULL,
    extra          TEXT
);
INSERT INTO readings_v8 (id, user_id, time_ms, utc_offset_min, kind, device, value_mgdl, trend, created_ms)
    SELECT id, user_id, time_ms, utc_offset_min, kind, device, value_mgdl, trend, created_ms FROM readings;
DROP TABLE readings;
ALTER TABLE readings_v8 RENAME TO readings;
CREATE UNIQUE INDEX readings_identity ON readings (user_id, time_ms, kind, device);
ALTER TABLE treatments ADD COLUMN extra TEXT;

-- Nightscout collections GlucoSync keeps opaquely (devicestatus, profile, food, settings, and
-- entries that are not glucose readings, such as calibrations): the uploader's JSON document.
-- Deletion keeps a tombstone (deleted = 1) so API v3 history reports it.
CREATE TABLE nightscout_documents (
    user_id     INTEGER NOT NULL,
    collection  TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    time_ms     INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, collection, id)
) WITHOUT ROWID;
CREATE INDEX nightscout_documents_by_time ON nightscout_documents (user_id, collection, time_ms);
CREATE INDEX nightscout_documents_by_modification ON nightscout_documents (user_id, collection, modified_ms);

-- API v3's history lists changes in the order the server made them.
CREATE INDEX readings_by_creation ON readings (user_id, created_ms);
CREATE INDEX treatments_by_change ON treatments (user_id, updated_ms);
