-- depends: 0009.access-requests
-- API keys of the public API (README, "Public API protection"). Only a SHA-256 of
-- each key is stored, never the key; `prefix` is the key's public part, for lookup
-- and for people to tell keys apart. The CLI writes as the administrator; the API
-- may read only the columns it needs to authenticate and limit a caller.
CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prefix      text NOT NULL UNIQUE CHECK (prefix ~ '^[a-z0-9]{12}$'),
    key_hash    bytea NOT NULL CHECK (octet_length(key_hash) = 32),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    scopes      text[] NOT NULL CHECK (cardinality(scopes) >= 1),
    rate_limit  text CHECK (rate_limit IS NULL OR length(rate_limit) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
GRANT SELECT (id, prefix, key_hash, scopes, rate_limit, expires_at, revoked_at)
    ON api_keys TO rates_app;
