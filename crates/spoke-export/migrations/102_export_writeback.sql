-- CRM writeback (issue #9): the admin's settings, every activity received on spoke.activities.v1
-- with its state, and the links from provider profiles to HubSpot records that decide where an
-- activity is logged.

-- One row per org that saved settings; orgs without a row have the defaults (off, engagements,
-- all three types).
CREATE TABLE writeback_settings (
    org_id          text PRIMARY KEY,
    enabled         boolean NOT NULL DEFAULT false,
    -- spoke.export.v1.WritebackLogMode (1 tasks, 2 engagements).
    log_mode        integer NOT NULL DEFAULT 2,
    -- spoke.common.v1.ActivityType values written back.
    activity_types  integer[] NOT NULL DEFAULT '{1,2,3}',
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One activity, keyed by the provider's activity id: a redelivered event finds its row and
-- never logs twice.
-- state: 'pending' (waiting for a match or for HubSpot), 'written', 'skipped' (settings),
-- 'dropped' (no match within the TTL), 'failed' (invalid, or refused by HubSpot for good).
CREATE TABLE writeback_activities (
    org_id              text NOT NULL,
    activity_id         text NOT NULL,
    -- spoke.common.v1.ActivityType.
    activity_type       integer NOT NULL,
    user_id             text NOT NULL DEFAULT '',
    contact_profile_id  text NOT NULL DEFAULT '',
    company_profile_id  text NOT NULL DEFAULT '',
    -- spoke.events.v1.ActivityEvent, protobuf-encoded (what is written).
    event               bytea NOT NULL,
    state               text NOT NULL,
    reason              text NOT NULL DEFAULT '',
    attempts            integer NOT NULL DEFAULT 0,
    -- Log mode fixed when the write is first attempted, so a retry after a settings change
    -- looks for the engagement where the first attempt may have created it.
    hubspot_object      text NOT NULL DEFAULT '',
    hubspot_id          text NOT NULL DEFAULT '',
    portal_id           bigint,
    -- Set just before a create is sent: a retry of an attempted write searches HubSpot first.
    attempted_at        timestamptz,
    -- A pending activity is taken by the worker when this time has come.
    next_attempt_at     timestamptz,
    lease_until         timestamptz,
    occurred_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, activity_id)
);
CREATE INDEX writeback_activities_list ON writeback_activities (org_id, created_at DESC, activity_id DESC);
CREATE INDEX writeback_activities_due ON writeback_activities (next_attempt_at) WHERE state = 'pending';
CREATE INDEX writeback_activities_contact ON writeback_activities (org_id, contact_profile_id)
    WHERE state = 'pending' AND contact_profile_id <> '';
CREATE INDEX writeback_activities_company ON writeback_activities (org_id, company_profile_id)
    WHERE state = 'pending' AND company_profile_id <> '';
CREATE INDEX writeback_activities_ttl ON writeback_activities (created_at) WHERE state = 'pending';

-- Provider profile → HubSpot record of the org's portal, from export results (records this
-- service wrote) and filtering matches (records already in HubSpot). Newest wins.
CREATE TABLE profile_links (
    org_id      text NOT NULL,
    portal_id   bigint NOT NULL,
    -- spoke.common.v1.ObjectType (companies, contacts).
    object      integer NOT NULL,
    profile_id  text NOT NULL,
    hubspot_id  text NOT NULL,
    -- 'export' or 'filtering'.
    source      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, object, profile_id)
);
