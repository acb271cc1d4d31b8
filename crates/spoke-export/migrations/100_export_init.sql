-- Schema `export`: export jobs and their records.
-- The platform's outbox and inbox tables come from spoke-platform's migrations (versions < 100).

-- One export job. Counters are kept in the row (updated in the same transaction as the records
-- they count) so progress reads never scan 100,000 records.
CREATE TABLE jobs (
    job_id            uuid PRIMARY KEY,
    org_id            text NOT NULL,
    idempotency_key   text NOT NULL,
    -- SHA-256 of the CreateExport request: the same key with another request is rejected.
    request_hash      bytea NOT NULL,
    portal_id         bigint NOT NULL,
    user_id           text NOT NULL,
    user_email        text NOT NULL DEFAULT '',
    object            integer NOT NULL,
    state             integer NOT NULL,
    duplicate_choice  integer NOT NULL DEFAULT 0,
    config_version    bigint NOT NULL,
    label             text NOT NULL DEFAULT '',
    user_account      boolean NOT NULL DEFAULT false,
    message           text NOT NULL DEFAULT '',
    batch_count       integer NOT NULL,
    total             bigint NOT NULL,
    n_unchecked       bigint NOT NULL,
    n_review          bigint NOT NULL DEFAULT 0,
    n_ready           bigint NOT NULL DEFAULT 0,
    n_created         bigint NOT NULL DEFAULT 0,
    n_updated         bigint NOT NULL DEFAULT 0,
    n_skipped         bigint NOT NULL DEFAULT 0,
    n_failed          bigint NOT NULL DEFAULT 0,
    -- W3C trace context of the CreateExport call, so writer spans link to it.
    traceparent       text,
    last_progress_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    UNIQUE (org_id, idempotency_key)
);
CREATE INDEX jobs_org_created ON jobs (org_id, created_at DESC, job_id DESC);
-- The writer looks for jobs with records to write.
CREATE INDEX jobs_active ON jobs (state) WHERE n_ready > 0;

-- One record of a job.
-- phase: 'unchecked' (sent to dedupe), 'review' (waiting for ResolveDuplicates),
-- 'resolving' (resolution sent back to dedupe), 'ready' (decided, to write),
-- 'writing' (a create was sent to HubSpot: on recovery look it up by unique key first),
-- 'done' (outcome set).
CREATE TABLE records (
    job_id            uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    seq               integer NOT NULL,
    record_id         text NOT NULL,
    profile_id        text NOT NULL,
    -- spoke.common.v1.Profile, protobuf-encoded.
    profile           bytea NOT NULL,
    phase             text NOT NULL DEFAULT 'unchecked',
    -- spoke.common.v1.RecordCheck, protobuf-encoded; NULL before checking.
    check_result      bytea,
    decision          integer NOT NULL DEFAULT 0,
    target_hubspot_id text NOT NULL DEFAULT '',
    duplicate_choice  integer NOT NULL DEFAULT 0,
    -- spoke.common.v1.RecordOutcome.
    outcome           integer NOT NULL DEFAULT 0,
    hubspot_id        text NOT NULL DEFAULT '',
    message           text NOT NULL DEFAULT '',
    attempted_at      timestamptz,
    lease_until       timestamptz,
    attempts          integer NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq),
    UNIQUE (job_id, record_id)
);
CREATE INDEX records_to_write ON records (job_id, seq) WHERE phase IN ('ready', 'writing');
CREATE INDEX records_review ON records (job_id, seq) WHERE phase = 'review';

-- ResolveDuplicates idempotency: (org, key) -> the request hash and the job it applied to.
CREATE TABLE resolutions (
    org_id          text NOT NULL,
    idempotency_key text NOT NULL,
    request_hash    bytea NOT NULL,
    job_id          uuid NOT NULL,
    remaining       bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, idempotency_key)
);
