-- Single sign-on: which account an OpenID Connect identity (issuer + subject) logs in to.
-- user_id leads the key (as every per-user table's); an identity belongs to one account.
CREATE TABLE identities (
    user_id    INTEGER NOT NULL,
    issuer     TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, issuer, subject)
) WITHOUT ROWID;
CREATE UNIQUE INDEX identities_subject ON identities (issuer, subject);
