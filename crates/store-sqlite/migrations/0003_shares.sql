-- Shares of a person's data with followers (caregivers, clinicians). A row is an invite until
-- accepted (follower_id set, token_hash cleared: single use).
CREATE TABLE shares (
    id           INTEGER PRIMARY KEY,
    owner_id     INTEGER NOT NULL,
    follower_id  INTEGER,
    role         TEXT    NOT NULL,
    invite_email TEXT    NOT NULL,
    token_hash   TEXT UNIQUE,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    accepted_ms  INTEGER,
    revoked_ms   INTEGER
);
CREATE INDEX shares_owner ON shares (owner_id, id);
CREATE INDEX shares_follower ON shares (follower_id, owner_id);
