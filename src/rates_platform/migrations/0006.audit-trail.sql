-- depends: 0005.role-model
-- An append-only, hash-chained audit trail. Each row's hash covers the previous row's
-- hash and its own fields, so an edit or a deletion anywhere breaks the chain from
-- there on (`dbaccess audit verify` names the first broken row).
CREATE SCHEMA audit;

CREATE TABLE audit.events (
    id bigint PRIMARY KEY,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    event_type text NOT NULL CHECK (event_type IN (
        'api.start', 'api.stop', 'data.load',
        'rotation.create', 'rotation.set', 'rotation.test', 'rotation.finish',
        'rotation.retire', 'rotation.fail', 'role.change')),
    target text NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('success', 'failure')),
    details jsonb NOT NULL DEFAULT '{}',
    prev_hash text NOT NULL,
    hash text NOT NULL
);

-- The newest row's id and hash: a deleted tail is detected too.
CREATE TABLE audit.chain_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id bigint NOT NULL,
    last_hash text NOT NULL
);
INSERT INTO audit.chain_head VALUES (true, 0, repeat('0', 64));

CREATE SEQUENCE audit.events_id_seq;

-- The text that a row's hash covers; `dbaccess audit verify` recomputes it in Python.
CREATE FUNCTION audit.canonical(e audit.events) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN concat_ws('|', e.id::text,
                 to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                 e.actor, e.event_type, e.target, e.outcome, e.details::text);

CREATE FUNCTION audit.chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
    head audit.chain_head;
BEGIN
    -- One writer at a time until commit, so ids and the chain follow commit order.
    SELECT * INTO STRICT head FROM audit.chain_head FOR UPDATE;
    NEW.id := nextval('audit.events_id_seq');
    NEW.at := clock_timestamp();
    NEW.actor := session_user;
    NEW.prev_hash := head.last_hash;
    NEW.hash := encode(sha256(convert_to(NEW.prev_hash || '|' || audit.canonical(NEW),
                                         'UTF8')), 'hex');
    UPDATE audit.chain_head SET last_id = NEW.id, last_hash = NEW.hash;
    RETURN NEW;
END
$$;

CREATE FUNCTION audit.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_chain BEFORE INSERT ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.chain();
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON audit.events
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- Writers may only append; the chain function reads and moves the head for them.
GRANT USAGE ON SCHEMA audit TO rates_app, rates_rotator;
GRANT INSERT ON audit.events TO rates_app, rates_rotator;
