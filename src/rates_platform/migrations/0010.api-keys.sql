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

-- Creating and revoking keys is audited (never the key: its id, prefix and scopes),
-- by the administrator acting as rates_owner, as data loads are.
DO $$
DECLARE
    check_name text;
    known text[];
BEGIN
    -- Every dotted name in the definition, whether it reads ARRAY['a.b'::text, ...]
    -- (0007) or '{a.b,...}'::text[] (0009 on).
    SELECT conname, array(SELECT m[1] FROM regexp_matches(pg_get_constraintdef(oid),
                                                          '([a-z_]+[.][a-z_]+)', 'g') AS m)
    INTO STRICT check_name, known
    FROM pg_constraint
    WHERE conrelid = 'audit.events'::regclass AND contype = 'c'
      AND pg_get_constraintdef(oid) LIKE '%event_type%';
    known := array(SELECT DISTINCT unnest(known || ARRAY['apikey.create', 'apikey.revoke'])
                   ORDER BY 1);
    EXECUTE format('ALTER TABLE audit.events DROP CONSTRAINT %I', check_name);
    EXECUTE format('ALTER TABLE audit.events ADD CONSTRAINT %I CHECK (event_type = ANY (%L::text[]))',
                   check_name, known);
END
$$;
INSERT INTO audit.event_writers (event_type, role_name)
VALUES ('apikey.create', 'rates_owner'), ('apikey.revoke', 'rates_owner')
ON CONFLICT DO NOTHING;
