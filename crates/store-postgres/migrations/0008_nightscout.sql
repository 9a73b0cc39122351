-- Nightscout compatibility (docs/nightscout.md).
-- Each person's Nightscout site: its handle in URLs (/ns/<handle>), the SHA-256 of the SHA-1 of
-- its API secret (uploaders send the SHA-1 in `api-secret`, so the SHA-1 is itself a credential
-- and is not stored), and the secret sealed with the installation's key (settings show it).
CREATE TABLE nightscout_sites (
    user_id       BIGINT PRIMARY KEY,
    handle        TEXT    NOT NULL,
    secret_hash   TEXT    NOT NULL,
    secret_sealed TEXT    NOT NULL,
    public_read   BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms    BIGINT  NOT NULL,
    updated_ms    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX nightscout_sites_handle ON nightscout_sites (handle);
CREATE UNIQUE INDEX nightscout_sites_secret ON nightscout_sites (secret_hash);

-- The fields of a Nightscout upload that GlucoSync does not model, as a JSON object, returned
-- with the record so uploaders round-trip their own fields.
ALTER TABLE readings ADD COLUMN extra TEXT;
ALTER TABLE treatments ADD COLUMN extra TEXT;

-- Nightscout collections GlucoSync keeps opaquely (devicestatus, profile, food, settings, and
-- entries that are not glucose readings, such as calibrations): the uploader's JSON document.
-- Deletion keeps a tombstone (deleted) so API v3 history reports it.
CREATE TABLE nightscout_documents (
    user_id     BIGINT  NOT NULL,
    collection  TEXT    NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    time_ms     BIGINT  NOT NULL,
    body        TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL,
    modified_ms BIGINT  NOT NULL,
    deleted     BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, collection, id)
);
CREATE INDEX nightscout_documents_by_time ON nightscout_documents (user_id, collection, time_ms);
CREATE INDEX nightscout_documents_by_modification ON nightscout_documents (user_id, collection, modified_ms);

-- API v3's history lists changes in the order the server made them.
CREATE INDEX readings_by_creation ON readings (user_id, created_ms);
CREATE INDEX treatments_by_change ON treatments (user_id, updated_ms);
