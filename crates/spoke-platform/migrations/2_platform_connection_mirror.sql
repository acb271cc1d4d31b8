-- Each service's local view of every org's HubSpot connection, maintained from
-- spoke.connection.events.v1, so services can answer "is this org connected, to which portal,
-- enabled?" without a synchronous call to the connection service.
CREATE TABLE IF NOT EXISTS connection_mirror (
    org_id       TEXT        PRIMARY KEY,
    portal_id    BIGINT      NOT NULL,
    status       TEXT        NOT NULL,
    enabled      BOOLEAN     NOT NULL DEFAULT false,
    user_account BOOLEAN     NOT NULL DEFAULT false,
    ui_domain    TEXT        NOT NULL DEFAULT '',
    updated_at   TIMESTAMPTZ NOT NULL
);
