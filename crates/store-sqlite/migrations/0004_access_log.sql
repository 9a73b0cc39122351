-- Every read of a person's health data by a follower, for the person to see.
CREATE TABLE access_log (
    id          INTEGER PRIMARY KEY,
    owner_id    INTEGER NOT NULL,
    time_ms     INTEGER NOT NULL,
    follower_id INTEGER NOT NULL,
    what        TEXT    NOT NULL
);
CREATE INDEX access_log_owner_time ON access_log (owner_id, time_ms);
