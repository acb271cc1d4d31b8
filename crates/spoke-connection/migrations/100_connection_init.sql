-- Schema `connection`: initial tables of the connection service.
-- The platform's outbox and inbox tables come from spoke-platform's migrations (versions < 100).

-- One row per org that ever connected; kept after Disconnect (settings and previous portal), removed by
-- DeleteIntegration.
CREATE TABLE connections (
    org_id                 TEXT PRIMARY KEY,
    portal_id              BIGINT NOT NULL,
    status                 TEXT NOT NULL,            -- connected | reauth_required | disconnected
    status_message         TEXT NOT NULL DEFAULT '',
    enabled                BOOLEAN NOT NULL DEFAULT TRUE,
    user_account_mode      BOOLEAN NOT NULL DEFAULT FALSE,
    primary_admin_user_id  TEXT NOT NULL,
    primary_admin_email    TEXT NOT NULL DEFAULT '',
    hubspot_user_id        TEXT NOT NULL DEFAULT '',
    hubspot_email          TEXT NOT NULL DEFAULT '',
    owner_id               TEXT NOT NULL DEFAULT '',
    account_type           TEXT NOT NULL DEFAULT '',
    plan                   INT NOT NULL DEFAULT 0,
    time_zone              TEXT NOT NULL DEFAULT '',
    company_currency       TEXT NOT NULL DEFAULT '',
    ui_domain              TEXT NOT NULL DEFAULT '',
    scopes                 TEXT[] NOT NULL DEFAULT '{}',
    connected_at           TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL
);

-- Encrypted OAuth tokens: user_id '' is the org's primary (service account) connection, others are
-- users' own connections (user account mode). Ciphertexts are nonce||ciphertext||tag (AES-256-GCM).
CREATE TABLE tokens (
    org_id            TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    portal_id         BIGINT NOT NULL,
    hubspot_user_id   TEXT NOT NULL,
    hubspot_email     TEXT NOT NULL DEFAULT '',
    key_id            TEXT NOT NULL,
    access_token_ct   BYTEA NOT NULL,
    refresh_token_ct  BYTEA NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    issued_at         TIMESTAMPTZ NOT NULL,
    status            TEXT NOT NULL,                 -- connected | reauth_required
    connected_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

-- OAuth states: single use; the result of the first completion is kept for retries with the same code.
CREATE TABLE oauth_states (
    state_id             UUID PRIMARY KEY,
    org_id               TEXT NOT NULL,
    user_id              TEXT NOT NULL,
    user_email           TEXT NOT NULL DEFAULT '',
    flow                 TEXT NOT NULL,
    return_url           TEXT NOT NULL DEFAULT '',
    allow_portal_change  BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at           TIMESTAMPTZ NOT NULL,
    used_at              TIMESTAMPTZ,
    code_hash            TEXT,
    result               BYTEA
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);

-- The org's users (from the provider's directory) with their HubSpot owner mapping.
CREATE TABLE org_users (
    org_id              TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    email               TEXT NOT NULL,
    display_name        TEXT NOT NULL DEFAULT '',
    admin               BOOLEAN NOT NULL DEFAULT FALSE,
    owner_id            TEXT NOT NULL DEFAULT '',
    hubspot_user_id     TEXT NOT NULL DEFAULT '',
    hubspot_email       TEXT NOT NULL DEFAULT '',
    hubspot_name        TEXT NOT NULL DEFAULT '',
    mapping_status      INT NOT NULL DEFAULT 3,       -- connection.v1.MappingStatus
    mapping_updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_users_by_name ON org_users (org_id, display_name, user_id);

-- Portal budget: one lock/pause row per portal and kind, and the grants of the current window.
CREATE TABLE budget_state (
    portal_id     BIGINT NOT NULL,
    kind          TEXT NOT NULL,                       -- standard | search
    paused_until  TIMESTAMPTZ NOT NULL DEFAULT 'epoch',
    PRIMARY KEY (portal_id, kind)
);
CREATE TABLE budget_grants (
    portal_id   BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    granted_at  TIMESTAMPTZ NOT NULL,
    permits     INT NOT NULL
);
CREATE INDEX budget_grants_window ON budget_grants (portal_id, kind, granted_at);

-- Data sharing toggles per org.
CREATE TABLE data_sharing (
    org_id              TEXT PRIMARY KEY,
    share_crm_data      BOOLEAN NOT NULL DEFAULT FALSE,
    share_usage_data    BOOLEAN NOT NULL DEFAULT FALSE,
    locked_by_contract  BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at          TIMESTAMPTZ NOT NULL,
    updated_by          TEXT NOT NULL DEFAULT ''
);

CREATE TABLE contributions (
    contribution_id  UUID PRIMARY KEY,
    org_id           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    category         INT NOT NULL,
    object           INT NOT NULL,
    record_count     BIGINT NOT NULL,
    source           TEXT NOT NULL DEFAULT '',
    source_id        TEXT NOT NULL DEFAULT '',
    occurred_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (org_id, idempotency_key)
);
CREATE INDEX contributions_newest ON contributions (org_id, occurred_at DESC, contribution_id);
