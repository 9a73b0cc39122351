-- Forecasts, one per CGM reading they were issued from (data time), and the fitted forecast
-- models of each person, versioned. Both are derived data: recomputable from readings and
-- treatments.
CREATE TABLE forecasts (
    user_id       INTEGER NOT NULL,
    issued_ms     INTEGER NOT NULL,
    model_version TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL,
    points        BLOB    NOT NULL,
    PRIMARY KEY (user_id, issued_ms)
) WITHOUT ROWID;

CREATE TABLE forecast_models (
    user_id          INTEGER NOT NULL,
    version          TEXT    NOT NULL,
    trained_until_ms INTEGER NOT NULL,
    created_ms       INTEGER NOT NULL,
    body             TEXT    NOT NULL,
    PRIMARY KEY (user_id, version)
) WITHOUT ROWID;
CREATE INDEX forecast_models_latest ON forecast_models (user_id, trained_until_ms);
