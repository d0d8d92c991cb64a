-- depends: 0010.api-keys
-- The restore drill's login reads a restored copy (README, "Disaster recovery"): the
-- rates tables the API answers from, and the audit trail it verifies. rates_reader would
-- do, but it is grantable only through the access workflow (the expiry job revokes any
-- other membership as drift), so the drill has a role of its own that is no policy role,
-- made and administered like rates_auditor: by the migrating administrator, which gets
-- ADMIN on it by creating it, and granted by `dbaccess audit grant-drill NAME`.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rates_dr_drill') THEN
        CREATE ROLE rates_dr_drill NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO rates_dr_drill;
GRANT SELECT ON ports, regions, prices, daily_totals TO rates_dr_drill;
GRANT rates_auditor TO rates_dr_drill;

-- Granting the drill's role is audited as its own event type, written by the
-- administrator as rates_owner (as role.change is).
DO $$
DECLARE
    check_name text;
    known text[];
BEGIN
    SELECT conname, array(SELECT m[1] FROM regexp_matches(pg_get_constraintdef(oid),
                                                          '([a-z_]+[.][a-z_]+)', 'g') AS m)
    INTO STRICT check_name, known
    FROM pg_constraint
    WHERE conrelid = 'audit.events'::regclass AND contype = 'c'
      AND pg_get_constraintdef(oid) LIKE '%event_type%';
    known := array(SELECT DISTINCT unnest(known || ARRAY['drill.grant']) ORDER BY 1);
    EXECUTE format('ALTER TABLE audit.events DROP CONSTRAINT %I', check_name);
    EXECUTE format('ALTER TABLE audit.events ADD CONSTRAINT %I CHECK (event_type = ANY (%L::text[]))',
                   check_name, known);
END
$$;
INSERT INTO audit.event_writers (event_type, role_name)
VALUES ('drill.grant', 'rates_owner')
ON CONFLICT DO NOTHING;
