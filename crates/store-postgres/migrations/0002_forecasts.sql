-- Forecasts, one per CGM reading they were issued from (data time), and the fitted forecast
-- models of each person, versioned. Both are derived data: recomputable from readings and
-- treatments. user_id leads both primary keys (distribution column, docs/architecture.md §12).
CREATE TABLE forecasts (
    user_id       BIGINT NOT NULL,
    issued_ms     BIGINT NOT NULL,
    model_version TEXT   NOT NULL,
    created_ms    BIGINT NOT NULL,
    points        BYTEA  NOT NULL,
    PRIMARY KEY (user_id, issued_ms)
);

CREATE TABLE forecast_models (
    user_id          BIGINT NOT NULL,
    version          TEXT   NOT NULL,
    trained_until_ms BIGINT NOT NULL,
    created_ms       BIGINT NOT NULL,
    body             TEXT   NOT NULL,
    PRIMARY KEY (user_id, version)
);
CREATE INDEX forecast_models_latest ON forecast_models (user_id, trained_until_ms);
