-- Transactional outbox: events written in the same transaction as the state change they describe,
-- published by the relay (spoke_platform::kafka::outbox) and then marked sent.
CREATE TABLE IF NOT EXISTS outbox (
    id          BIGSERIAL PRIMARY KEY,
    topic       TEXT        NOT NULL,
    key         TEXT        NOT NULL,
    ce_id       UUID        NOT NULL UNIQUE,
    ce_type     TEXT        NOT NULL,
    payload     BYTEA       NOT NULL,
    traceparent TEXT,
    tracestate  TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at     TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- Idempotent consumer: the ce_id of every event whose effects are committed.
CREATE TABLE IF NOT EXISTS inbox (
    ce_id        TEXT        NOT NULL,
    consumer     TEXT        NOT NULL,
    topic        TEXT        NOT NULL,
    partition    INT         NOT NULL,
    "offset"     BIGINT      NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, ce_id)
);
CREATE INDEX IF NOT EXISTS inbox_processed_at ON inbox (processed_at);
