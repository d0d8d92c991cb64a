-- depends: 0002.index-region-tree
-- The API's privileges live on a NOLOGIN group; login roles are only its members,
-- so credentials can be replaced without touching a single grant.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rates_app') THEN
        CREATE ROLE rates_app NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO rates_app;
GRANT SELECT ON ports, regions, prices TO rates_app;
