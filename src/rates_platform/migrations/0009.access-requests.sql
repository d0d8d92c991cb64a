-- depends: 0008.credentials-functions
-- Access requests (README, "Access requests"): people get the grantable roles only
-- through SECURITY DEFINER functions owned by the NOLOGIN role rates_access, which
-- alone holds ADMIN on them. Roles:
--   rates_access         NOLOGIN CREATEROLE: owns schema access and its functions;
--                        creates people's logins and one login per grant
--   rates_reader         NOLOGIN, grantable: SELECT on the rates tables
--   rates_operator       NOLOGIN, grantable: reads and changes the rates tables
--   rates_people         NOLOGIN: every person; EXECUTE on the workflow functions
--   rates_access_admins  NOLOGIN: user management and policy (the migrating admin)
-- rates_access ends sessions without pg_signal_backend (which an Azure administrator
-- cannot grant): it is a member, with INHERIT, of each login it creates.
-- The grantable roles are created *by* rates_access, so the administrator who runs
-- this migration holds no ADMIN on them (PostgreSQL 16+ gives a role's creator ADMIN,
-- and a creator cannot revoke that from itself).
-- Whatever the server's createrole_self_grant, the creator gets no SET or INHERIT.
SET LOCAL createrole_self_grant = '';
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rates_access') THEN
        CREATE ROLE rates_access NOLOGIN CREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rates_people') THEN
        CREATE ROLE rates_people NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rates_access_admins') THEN
        CREATE ROLE rates_access_admins NOLOGIN;
    END IF;
    -- The migrating administrator may act as rates_access for this transaction only.
    EXECUTE format('GRANT rates_access TO %I WITH INHERIT FALSE, SET TRUE', current_user);
    EXECUTE format('GRANT rates_access_admins TO %I', current_user);
END
$$;
GRANT rates_people TO rates_access WITH ADMIN OPTION, INHERIT FALSE, SET FALSE;
GRANT USAGE ON SCHEMA audit TO rates_access;
GRANT INSERT ON audit.events TO rates_access;

SET LOCAL ROLE rates_access;
DO $$
DECLARE
    grantable text;
BEGIN
    FOREACH grantable IN ARRAY ARRAY['rates_reader', 'rates_operator'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = grantable) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', grantable);
        END IF;
    END LOOP;
END
$$;
RESET ROLE;

GRANT USAGE ON SCHEMA public TO rates_reader, rates_operator;
GRANT SELECT ON ports, regions, prices, daily_totals TO rates_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON ports, regions, prices, daily_totals TO rates_operator;

-- The audit vocabulary grows by the access events (whatever the list holds already).
DO $$
DECLARE
    check_name text;
    known text[];
BEGIN
    SELECT conname, array(SELECT m[1] FROM regexp_matches(pg_get_constraintdef(oid),
                                                          '''([a-z_.]+)''', 'g') AS m)
    INTO STRICT check_name, known
    FROM pg_constraint
    WHERE conrelid = 'audit.events'::regclass AND contype = 'c'
      AND pg_get_constraintdef(oid) LIKE '%event_type%';
    known := array(SELECT DISTINCT unnest(known || ARRAY[
        'user.add', 'user.remove', 'policy.change', 'access.request', 'access.approve',
        'access.deny', 'access.grant', 'access.expire', 'access.revoke',
        'access.emergency', 'access.review', 'access.drift']) ORDER BY 1);
    EXECUTE format('ALTER TABLE audit.events DROP CONSTRAINT %I', check_name);
    EXECUTE format('ALTER TABLE audit.events ADD CONSTRAINT %I CHECK (event_type = ANY (%L::text[]))',
                   check_name, known);
END
$$;

INSERT INTO audit.event_writers (event_type, role_name)
SELECT kind, 'rates_access' FROM unnest(ARRAY[
    'user.add', 'user.remove', 'policy.change', 'access.request', 'access.approve',
    'access.deny', 'access.grant', 'access.expire', 'access.revoke', 'access.emergency',
    'access.review', 'access.drift']) AS kind
ON CONFLICT DO NOTHING;

CREATE SCHEMA access AUTHORIZATION rates_access;
SET LOCAL ROLE rates_access;
REVOKE ALL ON SCHEMA access FROM PUBLIC;

-- The applied policy: one row per grantable role (see access-policy.toml).
CREATE TABLE access.policy (
    role_name text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    approvals integer NOT NULL CHECK (approvals BETWEEN 1 AND 5),
    approver_groups text[] NOT NULL,
    max_minutes integer NOT NULL CHECK (max_minutes BETWEEN 1 AND 1440),
    reason_required boolean NOT NULL,
    request_expiry_minutes integer NOT NULL CHECK (request_expiry_minutes BETWEEN 1 AND 10080),
    emergency_max_minutes integer NOT NULL CHECK (emergency_max_minutes BETWEEN 0 AND 240)
);

CREATE TABLE access.people (
    name text PRIMARY KEY,
    approver boolean NOT NULL,
    groups text[] NOT NULL DEFAULT '{}',
    entra boolean NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    added_by text NOT NULL,
    removed_at timestamptz,
    removed_by text
);

CREATE TABLE access.requests (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requester text NOT NULL REFERENCES access.people,
    role_name text NOT NULL,
    -- Fractions allowed (0.1 = 6 seconds): short grants, and tests that watch one end.
    minutes numeric NOT NULL CHECK (minutes > 0),
    reason text NOT NULL,
    emergency boolean NOT NULL,
    approvals_needed integer NOT NULL,
    status text NOT NULL CHECK (status IN
        ('pending', 'granted', 'denied', 'lapsed', 'withdrawn', 'expired', 'revoked')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    decide_by timestamptz NOT NULL,
    -- The per-grant login's SCRAM verifier: computed by the requester's client, so
    -- the password never leaves the requester; cleared once the login exists.
    verifier text,
    login_name text UNIQUE,
    starts_at timestamptz,
    ends_at timestamptz,
    ended_at timestamptz,
    ended_by text,
    end_reason text,
    alerted_at timestamptz,
    reviewed_by text,
    reviewed_at timestamptz,
    review_note text,
    CHECK ((status IN ('granted', 'expired', 'revoked')) = (starts_at IS NOT NULL))
);
CREATE INDEX requests_open ON access.requests (status) WHERE status IN ('pending', 'granted');

CREATE TABLE access.approvals (
    request_id bigint NOT NULL REFERENCES access.requests,
    approver text NOT NULL,
    approved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, approver)
);

-- Each step of the workflow, in the hash chain; the actor is the chain's session_user.
CREATE FUNCTION access.audit(kind text, request_id bigint, target text, details jsonb)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO audit.events (event_type, target, outcome, details)
    VALUES (kind, coalesce(target, 'request:' || request_id), 'success',
            CASE WHEN request_id IS NULL THEN details
                 ELSE jsonb_build_object('request_id', request_id) || details END)
$$;

-- The calling person (session_user), or an error: identity is the database's.
CREATE FUNCTION access.caller() RETURNS access.people
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    who access.people;
BEGIN
    SELECT * INTO who FROM access.people WHERE name = session_user AND removed_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access: % is not a registered person', session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN who;
END
$$;

CREATE FUNCTION access.is_admin() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN pg_has_role(session_user, 'rates_access_admins', 'MEMBER');

CREATE FUNCTION access.may_approve(who access.people, role_name text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (
        SELECT FROM access.policy p
        WHERE p.role_name = may_approve.role_name
          AND ((who.approver AND 'approvers' = ANY (p.approver_groups))
               OR who.groups && p.approver_groups))
$$;

-- Ends every session of a login (plain or after SET ROLE: usename stays the login).
-- A loop, not one WHERE clause: the planner may evaluate quals in any order, and
-- pg_terminate_backend must never run for a row the other conditions exclude.
CREATE FUNCTION access.end_sessions(login text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    session record;
    ended integer := 0;
BEGIN
    FOR session IN SELECT a.pid, a.usesysid FROM pg_stat_activity a
                   WHERE a.usename = login AND a.pid <> pg_backend_pid() LOOP
        IF pg_has_role(session.usesysid, 'USAGE') THEN
            IF pg_terminate_backend(session.pid, 5000) THEN
                ended := ended + 1;
            END IF;
        END IF;
    END LOOP;
    RETURN ended;
END
$$;

-- A grant ends: no new login (NOLOGIN, VALID UNTIL now), no membership, no session.
CREATE FUNCTION access.end_grant(req access.requests, new_status text, reason text)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC' AS $$
#variable_conflict use_variable
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = req.login_name) THEN
        EXECUTE format('ALTER ROLE %I NOLOGIN VALID UNTIL %L', req.login_name,
                       least(now(), req.ends_at));
        EXECUTE format('REVOKE %I FROM %I', req.role_name, req.login_name);
    END IF;
    UPDATE access.requests
    SET status = new_status, ended_at = now(), ended_by = session_user, end_reason = reason
    WHERE id = req.id;
    PERFORM access.audit(CASE new_status WHEN 'expired' THEN 'access.expire'
                                         ELSE 'access.revoke' END,
                         req.id, NULL,
                         jsonb_build_object('role', req.role_name, 'login', req.login_name,
                                            'person', req.requester, 'reason', reason));
    RETURN access.end_sessions(req.login_name);
END
$$;

-- The grant itself: a login of its own, valid until the grant ends.
CREATE FUNCTION access.start_grant(req access.requests) RETURNS access.requests
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET createrole_self_grant = '' AS $$
#variable_conflict use_variable
DECLARE
    login text := req.requester || '_r' || req.id;
    ends timestamptz := now() + make_interval(secs => req.minutes * 60);
BEGIN
    UPDATE access.requests
    SET status = 'granted', starts_at = now(), ends_at = ends, login_name = login,
        verifier = NULL
    WHERE id = req.id AND status = 'pending';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access: request % is no longer pending', req.id
            USING ERRCODE = 'serialization_failure';
    END IF;
    EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L VALID UNTIL %L CONNECTION LIMIT 10',
                   login, req.verifier, ends);
    EXECUTE format('GRANT %I TO rates_access WITH INHERIT TRUE, SET FALSE', login);
    EXECUTE format('GRANT %I TO %I', req.role_name, login);
    -- Statement logging for this login, where the server lets rates_access set it
    -- (locally: GRANT SET ON PARAMETER log_statement; in Azure pgaudit does this).
    IF has_parameter_privilege('log_statement', 'SET') THEN
        EXECUTE format('ALTER ROLE %I SET log_statement = %L', login, 'all');
    END IF;
    PERFORM access.audit('access.grant', req.id, NULL,
                         jsonb_build_object('role', req.role_name, 'login', login,
                                            'person', req.requester,
                                            'ends_at', ends, 'emergency', req.emergency));
    SELECT * INTO STRICT req FROM access.requests WHERE id = req.id;
    RETURN req;
END
$$;

CREATE FUNCTION access.add_person(person text, verifier text, approver boolean, groups text[])
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET createrole_self_grant = '' AS $$
#variable_conflict use_variable
BEGIN
    IF NOT access.is_admin() THEN
        RAISE EXCEPTION 'access: only rates_access_admins manage people'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF person !~ '^[a-z][a-z0-9_]{0,39}$' OR person ~ '_r[0-9]+$' OR person LIKE 'pg\_%'
       OR person LIKE 'rates\_%' THEN
        RAISE EXCEPTION 'access: % is not a valid person name', person
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM access.people WHERE name = person AND removed_at IS NULL) THEN
        RAISE EXCEPTION 'access: % is already a person', person
            USING ERRCODE = 'duplicate_object';
    END IF;
    IF verifier IS NOT NULL THEN
        -- Anything but a whole verifier would be taken as a plaintext password.
        IF verifier !~ '^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$' THEN
            RAISE EXCEPTION 'access: a password login needs a SCRAM-SHA-256 verifier'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF EXISTS (SELECT FROM access.people WHERE name = person AND NOT entra) THEN
            EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', person, verifier);  -- re-added
        ELSE  -- a clash with any other role (a service login, say) is refused here
            EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', person, verifier);
            EXECUTE format('GRANT %I TO rates_access WITH INHERIT TRUE, SET FALSE', person);
            -- People write audit events (through these functions): an idle open
            -- transaction must not hold the chain head (see 0007).
            EXECUTE format('ALTER ROLE %I SET idle_in_transaction_session_timeout = %L',
                           person, '10s');
        END IF;
    ELSIF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = person) THEN
        RAISE EXCEPTION 'access: no Entra principal named % exists', person
            USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('GRANT rates_people TO %I', person);
    INSERT INTO access.people AS p (name, approver, groups, entra, added_by)
    VALUES (person, approver, coalesce(groups, '{}'), verifier IS NULL, session_user)
    ON CONFLICT (name) DO UPDATE
    SET approver = EXCLUDED.approver, groups = EXCLUDED.groups, entra = EXCLUDED.entra,
        added_at = now(), added_by = session_user, removed_at = NULL, removed_by = NULL;
    PERFORM access.audit('user.add', NULL, 'person:' || person,
                         jsonb_build_object('approver', approver, 'groups', groups,
                                            'entra', verifier IS NULL));
END
$$;

CREATE FUNCTION access.remove_person(person text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    req access.requests;
    ended integer := 0;
    entra_principal boolean;
BEGIN
    IF NOT access.is_admin() THEN
        RAISE EXCEPTION 'access: only rates_access_admins manage people'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE access.people SET removed_at = now(), removed_by = session_user
    WHERE name = person AND removed_at IS NULL
    RETURNING entra INTO entra_principal;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access: % is not a person', person USING ERRCODE = 'undefined_object';
    END IF;
    FOR req IN SELECT * FROM access.requests WHERE requester = person AND status = 'granted'
               FOR UPDATE LOOP
        ended := ended + access.end_grant(req, 'revoked', 'person removed');
    END LOOP;
    UPDATE access.requests SET status = 'withdrawn', ended_at = now(), ended_by = session_user,
                               end_reason = 'person removed', verifier = NULL
    WHERE requester = person AND status = 'pending';
    EXECUTE format('REVOKE rates_people FROM %I', person);
    IF NOT entra_principal THEN
        EXECUTE format('ALTER ROLE %I NOLOGIN', person);
    END IF;
    ended := ended + access.end_sessions(person);
    PERFORM access.audit('user.remove', NULL, 'person:' || person,
                         jsonb_build_object('sessions_ended', ended));
    RETURN ended;
END
$$;

CREATE FUNCTION access.list_people()
RETURNS TABLE (name text, approver boolean, groups text[], entra boolean,
               added_at timestamptz, removed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT name, approver, groups, entra, added_at, removed_at FROM access.people ORDER BY name
$$;

-- Replaces the whole policy; returns the change (before/after per role), audited.
CREATE FUNCTION access.apply_policy(doc jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    before jsonb;
    after jsonb;
    diff jsonb;
    entry record;
BEGIN
    IF NOT access.is_admin() THEN
        RAISE EXCEPTION 'access: only rates_access_admins apply the policy'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    FOR entry IN SELECT key FROM jsonb_each(doc) LOOP
        -- Grantable means: rates_access holds ADMIN on it and it has no login.
        IF NOT EXISTS (
            SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
            WHERE r.rolname = entry.key AND NOT r.rolcanlogin AND m.admin_option
              AND m.member = 'rates_access'::regrole)
           OR entry.key IN ('rates_people', 'rates_access_admins') THEN
            RAISE EXCEPTION 'access: % is not a grantable role', entry.key
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    SELECT coalesce(jsonb_object_agg(p.role_name, to_jsonb(p) - 'role_name'), '{}')
    INTO before FROM access.policy p;
    DELETE FROM access.policy;
    INSERT INTO access.policy
    SELECT key, coalesce(value ->> 'description', ''), (value ->> 'approvals')::integer,
           array(SELECT jsonb_array_elements_text(value -> 'approver_groups')),
           (value ->> 'max_minutes')::integer, (value ->> 'reason_required')::boolean,
           (value ->> 'request_expiry_minutes')::integer,
           (value ->> 'emergency_max_minutes')::integer
    FROM jsonb_each(doc);
    SELECT coalesce(jsonb_object_agg(p.role_name, to_jsonb(p) - 'role_name'), '{}')
    INTO after FROM access.policy p;
    SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('before', before -> k,
                                                          'after', after -> k)), '{}')
    INTO diff
    FROM (SELECT jsonb_object_keys(before) UNION SELECT jsonb_object_keys(after)) AS keys(k)
    WHERE (before -> k) IS DISTINCT FROM (after -> k);
    IF diff <> '{}' THEN
        PERFORM access.audit('policy.change', NULL, 'policy', jsonb_build_object('diff', diff));
    END IF;
    RETURN diff;
END
$$;

CREATE FUNCTION access.current_policy() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(jsonb_object_agg(p.role_name, to_jsonb(p) - 'role_name'), '{}')
    FROM access.policy p
$$;

CREATE FUNCTION access.request(role_name text, minutes numeric, reason text,
                               emergency boolean, verifier text) RETURNS access.requests
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    who access.people := access.caller();
    rule access.policy;
    req access.requests;
    longest integer;
BEGIN
    SELECT * INTO rule FROM access.policy p WHERE p.role_name = request.role_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access: % is not a grantable role in the policy', role_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    longest := CASE WHEN emergency THEN rule.emergency_max_minutes ELSE rule.max_minutes END;
    IF minutes IS NULL OR minutes <= 0 OR minutes > longest THEN
        RAISE EXCEPTION 'access: % minutes is outside (0, %] for %', minutes, longest,
            CASE WHEN emergency THEN 'an emergency' ELSE role_name END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (rule.reason_required OR emergency) AND length(btrim(coalesce(reason, ''))) < 3 THEN
        RAISE EXCEPTION 'access: a reason is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF verifier IS NULL OR verifier !~ '^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$' THEN
        RAISE EXCEPTION 'access: a request needs the SCRAM-SHA-256 verifier of its login'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO access.requests (requester, role_name, minutes, reason, emergency,
                                 approvals_needed, status, decide_by, verifier)
    VALUES (who.name, role_name, minutes, coalesce(reason, ''), emergency,
            CASE WHEN emergency THEN 0 ELSE rule.approvals END, 'pending',
            now() + make_interval(mins => rule.request_expiry_minutes), verifier)
    RETURNING * INTO req;
    PERFORM access.audit('access.request', req.id, NULL,
                         jsonb_build_object('role', role_name, 'minutes', minutes,
                                            'reason', reason, 'emergency', emergency));
    IF emergency THEN
        PERFORM access.audit('access.emergency', req.id, NULL,
                             jsonb_build_object('role', role_name, 'minutes', minutes,
                                                'reason', reason));
        req := access.start_grant(req);
    END IF;
    RETURN req;
END
$$;

-- One approval. Under the request's row lock, so parallel approvals serialise and
-- exactly one of them starts the grant (start_grant's UPDATE ... WHERE pending).
CREATE FUNCTION access.approve(request_id bigint) RETURNS access.requests
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    who access.people := access.caller();
    req access.requests;
    given integer;
BEGIN
    SELECT * INTO req FROM access.requests WHERE id = request_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access: no request %', request_id USING ERRCODE = 'undefined_object';
    END IF;
    IF req.status <> 'pending' THEN
        RAISE EXCEPTION 'access: request % is %, not pending', request_id, req.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF req.decide_by <= now() THEN
        RAISE EXCEPTION 'access: request % was not decided in time; request again', request_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF req.requester = who.name THEN
        RAISE EXCEPTION 'access: nobody approves their own request'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT access.may_approve(who, req.role_name) THEN
        RAISE EXCEPTION 'access: % may not approve %', who.name, req.role_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO access.approvals (request_id, approver) VALUES (req.id, who.name)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access: % has approved request % already', who.name, request_id
            USING ERRCODE = 'unique_violation';
    END IF;
    SELECT count(*) INTO given FROM access.approvals a WHERE a.request_id = req.id;
    PERFORM access.audit('access.approve', req.id, NULL,
                         jsonb_build_object('role', req.role_name, 'approvals', given,
                                            'needed', req.approvals_needed,
                                            'reason', req.reason));
    IF given >= req.approvals_needed THEN
        req := access.start_grant(req);
    END IF;
    RETURN req;
END
$$;

CREATE FUNCTION access.deny(request_id bigint, reason text) RETURNS access.requests
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    who access.people := access.caller();
    req access.requests;
BEGIN
    SELECT * INTO req FROM access.requests WHERE id = request_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access: no request %', request_id USING ERRCODE = 'undefined_object';
    END IF;
    IF req.status <> 'pending' THEN
        RAISE EXCEPTION 'access: request % is %, not pending', request_id, req.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF req.requester = who.name OR NOT access.may_approve(who, req.role_name) THEN
        RAISE EXCEPTION 'access: % may not decide request %', who.name, request_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF length(btrim(coalesce(reason, ''))) < 3 THEN
        RAISE EXCEPTION 'access: a denial needs a reason' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE access.requests SET status = 'denied', ended_at = now(), ended_by = who.name,
                               end_reason = reason, verifier = NULL
    WHERE id = req.id RETURNING * INTO req;
    PERFORM access.audit('access.deny', req.id, NULL,
                         jsonb_build_object('role', req.role_name, 'reason', reason));
    RETURN req;
END
$$;

-- The requester, an approver of the role or an access admin ends a grant (or withdraws
-- a pending request) at once.
CREATE FUNCTION access.revoke(request_id bigint, reason text) RETURNS access.requests
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    req access.requests;
    who access.people;
    allowed boolean := access.is_admin();
BEGIN
    SELECT * INTO req FROM access.requests WHERE id = request_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access: no request %', request_id USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT allowed THEN
        who := access.caller();
        allowed := who.name = req.requester OR access.may_approve(who, req.role_name);
    END IF;
    IF NOT allowed THEN
        RAISE EXCEPTION 'access: % may not revoke request %', session_user, request_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF req.status = 'granted' THEN
        PERFORM access.end_grant(req, 'revoked', coalesce(reason, 'revoked'));
    ELSIF req.status = 'pending' THEN
        UPDATE access.requests SET status = 'withdrawn', ended_at = now(),
                                   ended_by = session_user, end_reason = reason, verifier = NULL
        WHERE id = req.id;
        PERFORM access.audit('access.revoke', req.id, NULL,
                             jsonb_build_object('role', req.role_name, 'reason', reason,
                                                'state', 'pending'));
    ELSE
        RAISE EXCEPTION 'access: request % is % already', request_id, req.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT * INTO STRICT req FROM access.requests WHERE id = request_id;
    RETURN req;
END
$$;

CREATE FUNCTION access.review(request_id bigint, note text) RETURNS access.requests
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    who access.people := access.caller();
    req access.requests;
BEGIN
    SELECT * INTO req FROM access.requests WHERE id = request_id FOR UPDATE;
    IF NOT FOUND OR NOT req.emergency OR req.starts_at IS NULL THEN
        RAISE EXCEPTION 'access: request % is not an emergency grant', request_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF req.reviewed_at IS NOT NULL THEN
        RAISE EXCEPTION 'access: request % was reviewed by % already', request_id, req.reviewed_by
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF req.requester = who.name OR NOT access.may_approve(who, req.role_name) THEN
        RAISE EXCEPTION 'access: % may not review request %', who.name, request_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE access.requests SET reviewed_by = who.name, reviewed_at = now(), review_note = note
    WHERE id = req.id RETURNING * INTO req;
    PERFORM access.audit('access.review', req.id, NULL,
                         jsonb_build_object('role', req.role_name, 'note', note));
    RETURN req;
END
$$;

-- The job, every minute: undecided requests lapse, due grants end, new emergencies and
-- grants that were not ended in time (the job was down) are reported for alerting, and
-- any membership of a grantable role that no grant backs is revoked.
CREATE FUNCTION access.expire()
RETURNS TABLE (request_id bigint, kind text, person text, role_name text, login_name text,
               overdue_seconds integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    req access.requests;
    stray record;
BEGIN
    IF NOT (access.is_admin() OR pg_has_role(session_user, 'rates_people', 'MEMBER')) THEN
        RAISE EXCEPTION 'access: % may not run the expiry job', session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    FOR req IN SELECT * FROM access.requests r
               WHERE r.status = 'pending' AND r.decide_by <= now()
               FOR UPDATE SKIP LOCKED LOOP
        UPDATE access.requests SET status = 'lapsed', ended_at = now(),
                                   ended_by = session_user, verifier = NULL
        WHERE id = req.id;
        PERFORM access.audit('access.expire', req.id, NULL,
                             jsonb_build_object('role', req.role_name, 'state', 'undecided'));
        RETURN QUERY SELECT req.id, 'lapsed', req.requester, req.role_name, NULL::text, 0;
    END LOOP;
    FOR req IN SELECT * FROM access.requests r
               WHERE r.status = 'granted' AND r.ends_at <= now()
               FOR UPDATE SKIP LOCKED LOOP
        PERFORM access.end_grant(req, 'expired', 'expired');
        RETURN QUERY SELECT req.id,
            CASE WHEN now() - req.ends_at > interval '90 seconds' THEN 'overdue'
                 ELSE 'expired' END,
            req.requester, req.role_name, req.login_name,
            extract(epoch FROM now() - req.ends_at)::integer;
    END LOOP;
    FOR req IN UPDATE access.requests r SET alerted_at = now()
               WHERE r.emergency AND r.starts_at IS NOT NULL AND r.alerted_at IS NULL
               RETURNING * LOOP
        RETURN QUERY SELECT req.id, 'emergency', req.requester, req.role_name,
                            req.login_name, 0;
    END LOOP;
    FOR stray IN
        SELECT g.rolname AS granted, m.rolname AS member
        FROM pg_auth_members am
        JOIN pg_roles g ON g.oid = am.roleid
        JOIN pg_roles m ON m.oid = am.member
        WHERE g.rolname IN (SELECT p.role_name FROM access.policy p)
          AND m.rolname <> 'rates_access'
          AND NOT EXISTS (SELECT FROM access.requests r
                          WHERE r.login_name = m.rolname AND r.status = 'granted'
                            AND r.role_name = g.rolname)
    LOOP
        BEGIN
            EXECUTE format('REVOKE %I FROM %I', stray.granted, stray.member);
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;  -- granted by someone rates_access cannot overrule: still reported
        END;
        PERFORM access.end_sessions(stray.member);
        PERFORM access.audit('access.drift', NULL, 'role:' || stray.granted,
                             jsonb_build_object('member', stray.member));
        RETURN QUERY SELECT NULL::bigint, 'drift', stray.member::text, stray.granted::text,
                            stray.member::text, 0;
    END LOOP;
END
$$;

-- After the ending transaction committed: any session that logged in meanwhile ends.
CREATE FUNCTION access.sweep() RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(sum(access.end_sessions(a.usename)), 0)::integer
    FROM (SELECT DISTINCT usename::text FROM pg_stat_activity) AS a
    WHERE a.usename IN (SELECT r.login_name FROM access.requests r
                        WHERE r.status IN ('expired', 'revoked'))
       OR a.usename IN (SELECT p.name FROM access.people p WHERE p.removed_at IS NOT NULL)
$$;

CREATE FUNCTION access.requests_view(only_status text, unreviewed boolean, since timestamptz)
RETURNS TABLE (id bigint, requester text, role_name text, minutes numeric, reason text,
               emergency boolean, status text, requested_at timestamptz,
               decide_by timestamptz, approvals_needed integer, approvers text[],
               login_name text, starts_at timestamptz, ends_at timestamptz,
               ended_at timestamptz, ended_by text, end_reason text, reviewed_by text,
               reviewed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.id, r.requester, r.role_name, r.minutes, r.reason, r.emergency, r.status,
           r.requested_at, r.decide_by, r.approvals_needed,
           array(SELECT a.approver FROM access.approvals a WHERE a.request_id = r.id
                 ORDER BY a.approved_at),
           r.login_name, r.starts_at, r.ends_at, r.ended_at, r.ended_by, r.end_reason,
           r.reviewed_by, r.reviewed_at
    FROM access.requests r
    WHERE (only_status IS NULL OR r.status = only_status)
      AND (NOT unreviewed OR (r.emergency AND r.starts_at IS NOT NULL AND r.reviewed_at IS NULL))
      AND (since IS NULL OR coalesce(r.ended_at, 'infinity') >= since)
    ORDER BY r.id
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA access FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA access FROM PUBLIC;
GRANT USAGE ON SCHEMA access TO rates_people, rates_access_admins;
GRANT EXECUTE ON FUNCTION
    access.request(text, numeric, text, boolean, text), access.approve(bigint),
    access.deny(bigint, text), access.revoke(bigint, text), access.review(bigint, text),
    access.expire(), access.sweep(), access.current_policy(), access.list_people(),
    access.requests_view(text, boolean, timestamptz)
TO rates_people, rates_access_admins;
GRANT EXECUTE ON FUNCTION
    access.add_person(text, text, boolean, text[]), access.remove_person(text),
    access.apply_policy(jsonb)
TO rates_access_admins;
RESET ROLE;
REVOKE rates_access FROM CURRENT_USER;
