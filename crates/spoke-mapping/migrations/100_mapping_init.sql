-- Schema `mapping`: org configuration versions, compiled snapshots, cached HubSpot properties,
-- idempotency keys. The platform's outbox, inbox and connection_mirror tables come from
-- spoke-platform's migrations (versions < 100).

-- One row per org: the current configuration version. It only grows, even across a purge, so a
-- version number never names two different configurations.
CREATE TABLE org_config (
    org_id     text PRIMARY KEY,
    version    bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every save stores the complete configuration (protobuf messages as the API returns them).
CREATE TABLE config_versions (
    org_id      text NOT NULL,
    version     bigint NOT NULL,
    kind        text NOT NULL,
    actor       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    companies   bytea NOT NULL,
    contacts    bytea NOT NULL,
    preferences bytea NOT NULL,
    duplicates  bytea NOT NULL,
    intent      bytea NOT NULL,
    PRIMARY KEY (org_id, version)
);

-- Compiled mappings (CompiledMapping protobuf), written on first read of a version so every
-- replica serves a pinned version identically; GetCompiledMapping is one primary-key lookup.
CREATE TABLE compiled_mappings (
    org_id     text NOT NULL,
    version    bigint NOT NULL,
    object     text NOT NULL,
    compiled   bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, version, object)
);

-- The portal's property definitions per object, refreshed after a TTL.
CREATE TABLE property_cache (
    org_id     text NOT NULL,
    object     text NOT NULL,
    portal_id  bigint NOT NULL,
    fetched_at timestamptz NOT NULL,
    properties jsonb NOT NULL,
    PRIMARY KEY (org_id, object)
);

-- Results of mutating calls by (org, method, idempotency key).
CREATE TABLE idempotency_keys (
    org_id       text NOT NULL,
    method       text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    response     bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, method, key)
);
