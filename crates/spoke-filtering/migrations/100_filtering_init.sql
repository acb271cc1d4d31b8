-- Schema `filtering`: initial tables of the filtering service.
-- The platform's outbox and inbox tables come from spoke-platform's migrations (versions < 100).
-- Object codes follow spoke.common.v1.ObjectType (1 companies, 2 contacts, 3 deals); run states
-- and triggers follow spoke.common.v1.FilteringRunState / RunTrigger.

-- Provider profiles (provider-wide, no org). Only what matching needs is kept: the keys.
CREATE TABLE profiles (
    kind        SMALLINT    NOT NULL,
    profile_id  TEXT        NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, profile_id)
);

-- Match keys of the profiles (spoke-match encoding; the kind prefix makes keys of companies and
-- contacts disjoint). Looked up one page of HubSpot records at a time with `key = ANY($1)`.
CREATE TABLE profile_keys (
    key         TEXT     NOT NULL,
    kind        SMALLINT NOT NULL,
    profile_id  TEXT     NOT NULL,
    PRIMARY KEY (key, profile_id)
);
CREATE INDEX profile_keys_profile ON profile_keys (kind, profile_id);

-- Filter settings per org and object.
CREATE TABLE object_settings (
    org_id                 TEXT        NOT NULL,
    object                 SMALLINT    NOT NULL,
    enabled                BOOLEAN     NOT NULL DEFAULT false,
    owner_mode             SMALLINT    NOT NULL DEFAULT 0,
    owner_ids              TEXT[]      NOT NULL DEFAULT '{}',
    type_mode              SMALLINT    NOT NULL DEFAULT 0,
    company_types          TEXT[]      NOT NULL DEFAULT '{}',
    deal_window            SMALLINT    NOT NULL DEFAULT 0,
    require_deals          BOOLEAN     NOT NULL DEFAULT false,
    exclude_email_opt_outs BOOLEAN     NOT NULL DEFAULT false,
    contact_list_ids       TEXT[]      NOT NULL DEFAULT '{}',
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, object)
);

-- Org-wide settings: email alerts and Advanced Sync.
CREATE TABLE org_settings (
    org_id                TEXT        PRIMARY KEY,
    email_alerts          BOOLEAN     NOT NULL DEFAULT false,
    settings_updated_at   TIMESTAMPTZ,
    engagement_product    BOOLEAN     NOT NULL DEFAULT false,
    advanced_sync         BOOLEAN     NOT NULL DEFAULT false,
    advanced_synced_at    TIMESTAMPTZ
);

-- Admin email addresses seen on calls: recipients of alert emails.
CREATE TABLE org_admins (
    org_id     TEXT        NOT NULL,
    user_id    TEXT        NOT NULL,
    email      TEXT        NOT NULL,
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);

-- Schedules; next_run_at is the slot of the next scheduled run (NULL: none).
CREATE TABLE schedules (
    org_id        TEXT        PRIMARY KEY,
    frequency     SMALLINT    NOT NULL,
    weekday       SMALLINT    NOT NULL DEFAULT 0,
    day_of_month  SMALLINT    NOT NULL DEFAULT 0,
    next_run_at   TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE next_run_at IS NOT NULL;

-- Runs. The lease columns make at most one replica execute a run; the partial unique index makes
-- at most one run per org queued or running.
CREATE TABLE runs (
    run_id            UUID        PRIMARY KEY,
    org_id            TEXT        NOT NULL,
    trigger           SMALLINT    NOT NULL,
    objects           SMALLINT[]  NOT NULL,
    state             SMALLINT    NOT NULL,
    stats             JSONB       NOT NULL DEFAULT '[]',
    requested_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at        TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ,
    requested_by      TEXT        NOT NULL DEFAULT '',
    message           TEXT        NOT NULL DEFAULT '',
    scheduled_for     TIMESTAMPTZ,
    lease_owner       TEXT,
    lease_expires_at  TIMESTAMPTZ,
    attempt_id        UUID,
    attempts          INT         NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX runs_one_active_per_org ON runs (org_id) WHERE state IN (1, 2);
CREATE INDEX runs_org_requested ON runs (org_id, requested_at DESC, run_id DESC);

-- Results of mutating calls by idempotency key.
CREATE TABLE idempotency (
    org_id        TEXT        NOT NULL,
    method        TEXT        NOT NULL,
    key           TEXT        NOT NULL,
    request_hash  BYTEA       NOT NULL,
    response      BYTEA       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, method, key)
);

-- Matches: one row per (org, object, profile); several HubSpot records matching one profile are
-- collapsed into collapsed_ids. attempt_id is the run attempt that last confirmed the row: at the
-- end of a run, rows of the run's objects with another attempt_id are stale and removed.
CREATE TABLE matches (
    org_id              TEXT        NOT NULL,
    object              SMALLINT    NOT NULL,
    profile_id          TEXT        NOT NULL,
    hubspot_id          TEXT        NOT NULL,
    hubspot_rank        BIGINT      NOT NULL,
    collapsed_ids       TEXT[]      NOT NULL,
    owner_id            TEXT        NOT NULL DEFAULT '',
    owner_name          TEXT        NOT NULL DEFAULT '',
    filtered_at         TIMESTAMPTZ NOT NULL,
    hubspot_url         TEXT        NOT NULL,
    matched_by          TEXT        NOT NULL,
    run_id              UUID        NOT NULL,
    attempt_id          UUID        NOT NULL,
    PRIMARY KEY (org_id, object, profile_id)
);
CREATE INDEX matches_owner ON matches (org_id, object, owner_id);
CREATE INDEX matches_attempt ON matches (org_id, object, attempt_id);
-- Deals link to company profiles through the company matches' HubSpot ids.
CREATE INDEX matches_company_ids ON matches USING GIN (collapsed_ids) WHERE object = 1;

-- Deals that passed the deal filters in a run attempt, with their company: companies with
-- `require_deals` look them up page by page, and at the end of the run they are linked to the
-- company profiles of the company matches. Deleted when the attempt ends.
CREATE TABLE attempt_deals (
    attempt_id  UUID        NOT NULL,
    deal_id     TEXT        NOT NULL,
    company_id  TEXT        NOT NULL,
    owner_id    TEXT        NOT NULL,
    rank        BIGINT      NOT NULL,
    PRIMARY KEY (attempt_id, deal_id)
);
CREATE INDEX attempt_deals_company ON attempt_deals (attempt_id, company_id);

-- Advanced Sync: every record of every imported object with all readable fields, matched or not.
CREATE TABLE sync_records (
    org_id              TEXT        NOT NULL,
    object              TEXT        NOT NULL,
    record_id           TEXT        NOT NULL,
    properties          JSONB       NOT NULL,
    matched_profile_id  TEXT,
    synced_at           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, object, record_id)
);

-- Advanced Sync deal history: a row per observed change of a tracked deal property.
CREATE TABLE deal_history (
    org_id       TEXT        NOT NULL,
    deal_id      TEXT        NOT NULL,
    property     TEXT        NOT NULL,
    value        TEXT,
    observed_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, deal_id, property, observed_at)
);
