-- depends: 0007.audit-anchored-bound-writers
-- Least privilege for the rotator (README, "Database access"): it loses CREATEROLE,
-- its ADMIN option on the slots and pg_signal_backend. What it may still do goes
-- through SECURITY DEFINER functions owned by the NOLOGIN role rates_credentials,
-- limited to the two slots (and the rotator's own password), with VALID UNTIL bounded
-- by the configured credential lifetime; each writes its own audit event.
-- Runs as a non-superuser administrator (Azure's: NOSUPERUSER CREATEROLE CREATEDB).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rates_credentials') THEN
        -- CREATEROLE (with ADMIN on a role) is what ALTER ROLE ... PASSWORD, LOGIN and
        -- VALID UNTIL need on PostgreSQL 16+; only the functions below can use it.
        CREATE ROLE rates_credentials NOLOGIN CREATEROLE;
    END IF;
END
$$;
-- The administrator gives rates_credentials its objects (ALTER ... OWNER needs SET).
GRANT rates_credentials TO CURRENT_USER WITH INHERIT FALSE, SET TRUE;
-- ADMIN to change the slots; INHERIT so pg_terminate_backend may end their sessions
-- (a role may signal the backends of roles it has the privileges of).
GRANT rates_app_a, rates_app_b TO rates_credentials WITH ADMIN OPTION, INHERIT TRUE, SET FALSE;
GRANT rates_rotator TO rates_credentials WITH ADMIN OPTION, INHERIT FALSE, SET FALSE;

-- The rotator keeps only its login and EXECUTE on the functions below.
REVOKE rates_app_a, rates_app_b FROM rates_rotator;
ALTER ROLE rates_rotator NOCREATEROLE;
DO $$
BEGIN
    -- Granted by 0005 where a superuser migrated; an Azure admin never could grant it.
    IF pg_has_role('rates_rotator', 'pg_signal_backend', 'MEMBER') THEN
        REVOKE pg_signal_backend FROM rates_rotator;
    END IF;
END
$$;

CREATE SCHEMA credentials;

-- The longest VALID UNTIL a password may get, from now. `dbaccess bootstrap` sets it
-- to CREDENTIAL_LIFETIME_DAYS.
CREATE TABLE credentials.settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    max_lifetime interval NOT NULL CHECK (max_lifetime > interval '0')
);
INSERT INTO credentials.settings VALUES (true, interval '60 days');

-- A counter per managed role, bumped by every change: a rotation's test proves a
-- password only for the generation it saw.
CREATE TABLE credentials.changes (
    role_name name PRIMARY KEY,
    generation bigint NOT NULL,
    changed_at timestamptz NOT NULL
);
INSERT INTO credentials.changes VALUES
    ('rates_app_a', 0, now()), ('rates_app_b', 0, now()), ('rates_rotator', 0, now());

-- An instant with an explicit UTC offset: never read in the session's TimeZone.
CREATE FUNCTION credentials.utc(instant timestamptz) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
RETURN to_char(instant AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00';

CREATE FUNCTION credentials.bump(target text) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    generation bigint;
BEGIN
    UPDATE credentials.changes c
    SET generation = c.generation + 1, changed_at = clock_timestamp()
    WHERE c.role_name = target RETURNING c.generation INTO STRICT generation;
    RETURN generation;
END
$$;

-- Refuses a role that is not one of the two slots, and anything but a SCRAM-SHA-256
-- verifier (a plaintext password would reach the server's logs), and an expiry past
-- the configured lifetime (one minute of clock skew allowed), or none.
CREATE FUNCTION credentials.check_password(slot text, verifier text, valid_until timestamptz)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lifetime interval;
BEGIN
    IF slot IS NULL OR slot NOT IN ('rates_app_a', 'rates_app_b', 'rates_rotator') THEN
        RAISE EXCEPTION 'role % is not managed by rates_credentials', slot
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF verifier IS NULL OR verifier !~ '^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$' THEN
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

CREATE FUNCTION credentials.check_slot(slot text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF slot IS NULL OR slot NOT IN ('rates_app_a', 'rates_app_b') THEN
        RAISE EXCEPTION 'role % is not a rotated slot', slot
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

-- Give a slot LOGIN and a new password (as a verifier), audited in the same
-- transaction; returns the slot's new generation.
CREATE FUNCTION credentials.set_password(
    slot text, verifier text, valid_until timestamptz, version text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    generation bigint;
BEGIN
    PERFORM credentials.check_slot(slot);
    PERFORM credentials.check_password(slot, verifier, valid_until);
    EXECUTE format('ALTER ROLE %I WITH LOGIN PASSWORD %L VALID UNTIL %L',
                   slot, verifier, credentials.utc(valid_until));
    generation := credentials.bump(slot);
    INSERT INTO audit.events (event_type, target, outcome, details)
    VALUES ('rotation.set', slot, 'success',
            jsonb_build_object('version', version, 'valid_until', credentials.utc(valid_until),
                               'generation', generation));
    RETURN generation;
END
$$;

-- Take a slot's login and password away (retired, failed or untracked: see README);
-- returns the slot's new generation.
CREATE FUNCTION credentials.disable_login(slot text, reason text, version text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    generation bigint;
BEGIN
    PERFORM credentials.check_slot(slot);
    IF reason IS NULL OR reason NOT IN ('retired', 'failed', 'untracked') THEN
        RAISE EXCEPTION 'unknown reason %', reason USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('ALTER ROLE %I WITH NOLOGIN PASSWORD NULL', slot);
    generation := credentials.bump(slot);
    INSERT INTO audit.events (event_type, target, outcome, details)
    VALUES (CASE reason WHEN 'retired' THEN 'rotation.retire' ELSE 'role.change' END,
            slot, 'success',
            jsonb_build_object('change', 'login disabled', 'reason', reason,
                               'version', version, 'generation', generation));
    RETURN generation;
END
$$;

-- End a slot's sessions, waiting up to a second for each; returns how many.
CREATE FUNCTION credentials.end_sessions(slot text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ended integer := 0;
    session integer;
BEGIN
    PERFORM credentials.check_slot(slot);
    -- One by one: in a single query the planner may signal before it filters.
    FOR session IN
        SELECT a.pid FROM pg_stat_activity a
        WHERE a.usename = slot AND a.pid <> pg_backend_pid()
    LOOP
        IF pg_terminate_backend(session, 1000) THEN
            ended := ended + 1;
        END IF;
    END LOOP;
    RETURN ended;
END
$$;

-- The rotator's own password (single slot: see README), bounded like the slots'.
CREATE FUNCTION credentials.set_rotator_password(verifier text, valid_until timestamptz)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    generation bigint;
BEGIN
    PERFORM credentials.check_password('rates_rotator', verifier, valid_until);
    EXECUTE format('ALTER ROLE rates_rotator WITH LOGIN PASSWORD %L VALID UNTIL %L',
                   verifier, credentials.utc(valid_until));
    generation := credentials.bump('rates_rotator');
    INSERT INTO audit.events (event_type, target, outcome, details)
    VALUES ('role.change', 'rates_rotator', 'success',
            jsonb_build_object('change', 'password set',
                               'valid_until', credentials.utc(valid_until),
                               'generation', generation));
    RETURN generation;
END
$$;

REVOKE ALL ON FUNCTION credentials.utc(timestamptz), credentials.bump(text),
    credentials.check_password(text, text, timestamptz), credentials.check_slot(text),
    credentials.set_password(text, text, timestamptz, text),
    credentials.disable_login(text, text, text), credentials.end_sessions(text),
    credentials.set_rotator_password(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION credentials.set_password(text, text, timestamptz, text),
    credentials.disable_login(text, text, text), credentials.end_sessions(text),
    credentials.set_rotator_password(text, timestamptz) TO rates_rotator;
GRANT USAGE ON SCHEMA credentials TO rates_rotator;
GRANT SELECT ON credentials.settings, credentials.changes TO rates_rotator;
GRANT USAGE ON SCHEMA audit TO rates_credentials;
GRANT INSERT ON audit.events TO rates_credentials;

-- A new owner needs CREATE on the schema; the schema itself goes last (grants move
-- with ownership).
GRANT USAGE, CREATE ON SCHEMA credentials TO rates_credentials;
ALTER TABLE credentials.settings OWNER TO rates_credentials;
ALTER TABLE credentials.changes OWNER TO rates_credentials;
ALTER FUNCTION credentials.utc(timestamptz) OWNER TO rates_credentials;
ALTER FUNCTION credentials.bump(text) OWNER TO rates_credentials;
ALTER FUNCTION credentials.check_password(text, text, timestamptz) OWNER TO rates_credentials;
ALTER FUNCTION credentials.check_slot(text) OWNER TO rates_credentials;
ALTER FUNCTION credentials.set_password(text, text, timestamptz, text)
    OWNER TO rates_credentials;
ALTER FUNCTION credentials.disable_login(text, text, text) OWNER TO rates_credentials;
ALTER FUNCTION credentials.end_sessions(text) OWNER TO rates_credentials;
ALTER FUNCTION credentials.set_rotator_password(text, timestamptz) OWNER TO rates_credentials;
ALTER SCHEMA credentials OWNER TO rates_credentials;

-- The password steps are the functions' now (0007 bound them to both until here).
DELETE FROM audit.event_writers
WHERE role_name = 'rates_rotator' AND event_type IN ('rotation.set', 'rotation.retire');
