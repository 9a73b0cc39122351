-- Account deletion (docs/data-ownership.md): when set, the account is deleted, with all its
-- data, at this time; until then its owner may cancel.
ALTER TABLE users ADD COLUMN deletion_due_ms INTEGER;
CREATE INDEX users_deletion_due ON users (deletion_due_ms) WHERE deletion_due_ms IS NOT NULL;
