-- depends: 0010.api-keys
-- Two holes a hostile review found (README, "Database access"):
--   * the rotation's advisory lock could be taken by any login (the API's leaked one
--     held it forever: every run said "another rotation is running"); a run now locks
--     credentials.rotation_lock, which only the rotator may lock;
--   * a string the verifier pattern let through but PostgreSQL cannot parse as a SCRAM
--     secret (short keys, an overflowing iteration count, bad base64) was taken as a
--     plaintext password, hashed, and accepted, with its text in the statement log.
SET LOCAL ROLE rates_credentials;

CREATE TABLE credentials.rotation_lock ();
-- LOCK TABLE ... IN EXCLUSIVE MODE needs UPDATE; the table never holds a row.
GRANT UPDATE ON credentials.rotation_lock TO rates_rotator;

-- Exactly what PostgreSQL parses as a SCRAM-SHA-256 secret: iterations 1..999999999,
-- a base64 salt, and two base64 keys of 32 bytes each.
CREATE FUNCTION credentials.is_scram_verifier(verifier text) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
RETURN coalesce(verifier ~ ('^SCRAM-SHA-256\$[1-9][0-9]{0,8}:'
                            '(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)'
                            '\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$'), false);
REVOKE ALL ON FUNCTION credentials.is_scram_verifier(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION credentials.check_password(slot text, verifier text, valid_until timestamptz)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lifetime interval;
BEGIN
    IF slot IS NULL OR slot NOT IN ('rates_app_a', 'rates_app_b', 'rates_rotator') THEN
        RAISE EXCEPTION 'role % is not managed by rates_credentials', slot
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT credentials.is_scram_verifier(verifier) THEN
        RAISE EXCEPTION 'a SCRAM-SHA-256 verifier is required, never a password'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.max_lifetime INTO STRICT lifetime FROM credentials.settings s;
    IF valid_until IS NULL OR NOT isfinite(valid_until)
       OR valid_until > now() + lifetime + interval '1 minute' THEN
        RAISE EXCEPTION 'VALID UNTIL % is past the credential lifetime (%)',
                        coalesce(credentials.utc(valid_until), 'NULL'), lifetime
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

RESET ROLE;
