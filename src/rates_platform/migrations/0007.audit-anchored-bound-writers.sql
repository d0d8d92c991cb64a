-- depends: 0006.audit-trail
-- The audit trail, hardened (README, "Audit trail"):
--   * an unambiguous hash input (length-prefixed fields) for every row from here on;
--     rows written before keep verifying under the old format (audit.hash_formats);
--   * each event type may be written only by the roles bound to it (audit.event_writers);
--   * a writer waits at most lock_timeout for the chain head, and the login roles that
--     write events lose an idle open transaction after a few seconds, so no login can
--     hold the chain (and with it every rotation) for long.
-- External anchors (`dbaccess audit anchor`) make a rewritten history detectable even
-- when a superuser or the owner recomputes every hash.

-- Wait for in-flight writers and keep new ones out until commit: every row committed
-- before the switch is in the old format, every row after it in the new one.
LOCK TABLE audit.events IN EXCLUSIVE MODE;

-- Which hash format covers which ids: a row is in the highest version whose first_id
-- is not above its id (on a new database version 2 covers every row).
CREATE TABLE audit.hash_formats (
    version smallint PRIMARY KEY,
    first_id bigint NOT NULL,
    description text NOT NULL
);
INSERT INTO audit.hash_formats VALUES
    (1, 1, 'sha256(prev_hash || ''|'' || fields joined by ''|'')'),
    (2, (SELECT last_id + 1 FROM audit.chain_head),
     'sha256(netstring(prev_hash) || netstring of id, at, actor, event_type, target, '
     'outcome, details); netstring(s) = byte length of UTF-8 s || '':'' || s || '','''
    );

-- One field as "<byte length>:<UTF-8 bytes>,": no content can shift a field boundary.
CREATE FUNCTION audit.netstring(field text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT
RETURN convert_to(octet_length(convert_to(field, 'UTF8'))::text || ':', 'UTF8')
       || convert_to(field, 'UTF8') || '\x2c'::bytea;

-- The hash of a row (format 2) given the previous row's hash. `at` is rendered in UTC
-- with microseconds; details as PostgreSQL's jsonb text (keys unique, ordered by length
-- then bytes, ", " and ": " separators), which is one text for one jsonb value.
CREATE FUNCTION audit.row_hash(prev_hash text, e audit.events) RETURNS text
LANGUAGE sql STABLE
RETURN encode(sha256(
    audit.netstring(prev_hash)
    || audit.netstring(e.id::text)
    || audit.netstring(to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
    || audit.netstring(e.actor)
    || audit.netstring(e.event_type)
    || audit.netstring(e.target)
    || audit.netstring(e.outcome)
    || audit.netstring(e.details::text)), 'hex');

-- lock_timeout: a writer waiting for the chain head fails after 5 s with a clear error
-- instead of hanging (an idle holder is ended by the server after 3 s, see below, so a
-- writer normally gets through). The function's SET cannot be overridden by the caller.
CREATE OR REPLACE FUNCTION audit.chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, audit
SET lock_timeout = '5s' AS $$
DECLARE
    head audit.chain_head;
BEGIN
    -- One writer at a time until commit, so ids and the chain follow commit order.
    BEGIN
        SELECT * INTO STRICT head FROM audit.chain_head FOR UPDATE;
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION 'audit chain is busy: another transaction has held its head for '
                        'over %', current_setting('lock_timeout')
            USING ERRCODE = 'lock_not_available',
                  HINT = 'a session that wrote an audit event has not committed; '
                         'pg_stat_activity shows it (state ''idle in transaction'')';
    END;
    NEW.id := nextval('audit.events_id_seq');
    NEW.at := clock_timestamp();
    NEW.actor := session_user;
    NEW.prev_hash := head.last_hash;
    NEW.hash := audit.row_hash(NEW.prev_hash, NEW);
    UPDATE audit.chain_head SET last_id = NEW.id, last_hash = NEW.hash;
    RETURN NEW;
END
$$;

-- Event types bound to the roles that may write them. A writer's effective role must
-- have the privileges of (or be able to SET ROLE to) a role bound to the type. Role
-- names are text: a bound role may not exist yet (rates_credentials comes with 0008).
CREATE TABLE audit.event_writers (
    event_type text NOT NULL,
    role_name text NOT NULL,
    PRIMARY KEY (event_type, role_name)
);
INSERT INTO audit.event_writers VALUES
    ('api.start', 'rates_app'),
    ('api.stop', 'rates_app'),
    ('data.load', 'rates_owner'),
    ('role.change', 'rates_owner'),
    ('role.change', 'rates_credentials'),
    ('rotation.create', 'rates_rotator'),
    ('rotation.test', 'rates_rotator'),
    ('rotation.finish', 'rates_rotator'),
    ('rotation.fail', 'rates_rotator'),
    ('rotation.set', 'rates_credentials'),
    ('rotation.retire', 'rates_credentials'),
    -- Until 0008 moves these steps into rates_credentials' functions (it deletes both).
    ('rotation.set', 'rates_rotator'),
    ('rotation.retire', 'rates_rotator');

-- Read with the owner's rights (writers need no access to the bindings); roles that do
-- not exist are skipped rather than an error.
CREATE FUNCTION audit.may_write(event_type text, writer name) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, audit
RETURN EXISTS (
    SELECT 1 FROM audit.event_writers w JOIN pg_catalog.pg_roles r ON r.rolname = w.role_name
    WHERE w.event_type = may_write.event_type
      AND (pg_has_role(writer, r.oid, 'USAGE') OR pg_has_role(writer, r.oid, 'SET')));

-- Not SECURITY DEFINER, so current_user is the writer's effective role: a login's own,
-- or the owner of the SECURITY DEFINER function that inserts. Named to fire before
-- events_chain (same-event triggers fire in name order): a refused writer never waits
-- for the chain head.
CREATE FUNCTION audit.authorize() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, audit AS $$
BEGIN
    IF NOT audit.may_write(NEW.event_type, current_user) THEN
        RAISE EXCEPTION 'role % may not write % audit events', current_user, NEW.event_type
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER events_authorize BEFORE INSERT ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.authorize();

-- An audit writer that leaves its transaction open after an insert holds the chain
-- head: the server ends such a session after 3 s. Set on the login roles that write
-- (role settings are not inherited, so on each current member of rates_app too; new
-- members get it from dbaccess.roles). A hostile session can still SET it back: then
-- lock_timeout above bounds every other writer's wait.
DO $$
DECLARE
    login name;
BEGIN
    FOR login IN
        SELECT r.rolname FROM pg_roles r
        WHERE (r.rolname IN ('rates_app_a', 'rates_app_b', 'rates_rotator')
               OR pg_has_role(r.oid, 'rates_app', 'USAGE'))
          AND r.rolname <> 'rates_app' AND NOT r.rolsuper
    LOOP
        IF pg_has_role(current_user, login, 'MEMBER WITH ADMIN OPTION') THEN
            EXECUTE format('ALTER ROLE %I SET idle_in_transaction_session_timeout = %L',
                           login, '3s');
        ELSE
            RAISE NOTICE 'not setting idle_in_transaction_session_timeout on %: no ADMIN '
                         'option on it', login;
        END IF;
    END LOOP;
END
$$;

-- Reads the trail, writes nothing: the login of `dbaccess audit anchor|verify|tail`.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rates_auditor') THEN
        CREATE ROLE rates_auditor NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA audit TO rates_auditor;
GRANT SELECT ON audit.events, audit.chain_head, audit.hash_formats, audit.event_writers
    TO rates_auditor;
