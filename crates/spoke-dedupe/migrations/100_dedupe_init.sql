-- Schema `dedupe`: the match index, pending creates and per-record check results.
-- The platform's outbox and inbox tables come from spoke-platform's migrations (versions < 100).

-- Normalized match key -> HubSpot record, per portal. Authoritative for what Spoke wrote
-- (fed by spoke.export.results.v1) and a cache of what HubSpot lookups returned. Keys use
-- spoke-match's stable encoding (`domain:acme.com`, `email:a@b.com`, `name_company:a|b|c`).
CREATE TABLE match_index (
    portal_id          bigint      NOT NULL,
    match_key          text        NOT NULL,
    hubspot_id         text        NOT NULL,
    org_id             text        NOT NULL,
    -- How Spoke learned it: created / updated by an export, or seen in a HubSpot lookup.
    source             text        NOT NULL CHECK (source IN ('created', 'updated', 'seen')),
    hubspot_created_at timestamptz,
    first_seen_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (portal_id, match_key, hubspot_id)
);
CREATE INDEX match_index_org ON match_index (org_id);

-- A record that was decided CREATE / CREATE_DUPLICATE but whose HubSpot id is not known yet
-- (its result has not been consumed). One row per (portal, key): a later check of the same key
-- sees the in-flight create instead of asking HubSpot's lagging search.
CREATE TABLE pending_creates (
    portal_id   bigint      NOT NULL,
    match_key   text        NOT NULL,
    org_id      text        NOT NULL,
    job_id      text        NOT NULL,
    record_id   text        NOT NULL,
    reserved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (portal_id, match_key)
);
CREATE INDEX pending_creates_record ON pending_creates (job_id, record_id);
CREATE INDEX pending_creates_org ON pending_creates (org_id);

-- The last check of each job record (what was published on spoke.export.checked.v1).
CREATE TABLE record_checks (
    job_id            text        NOT NULL,
    record_id         text        NOT NULL,
    org_id            text        NOT NULL,
    portal_id         bigint      NOT NULL,
    batch_index       integer     NOT NULL,
    decision          text        NOT NULL,
    target_hubspot_id text        NOT NULL DEFAULT '',
    candidate_count   integer     NOT NULL,
    reason            text        NOT NULL DEFAULT '',
    checked_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, record_id)
);
CREATE INDEX record_checks_org ON record_checks (org_id);
