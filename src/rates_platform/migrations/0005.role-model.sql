-- depends: 0004.daily-totals
-- The role model of secure database access (see README, "Database access"):
--   rates_owner    NOLOGIN  owns every schema object (ownership is reassigned to it
--                           after each migration run)
--   rates_app      NOLOGIN  the API's privileges (from 0003)
--   rates_app_a/b  login slots, members of rates_app, owning nothing; the rotation
--                           gives exactly one of them a fresh password at a time
--   rates_rotator  may change the slots' passwords and end their sessions, nothing else
DO $$
DECLARE
    slot text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rates_owner') THEN
        CREATE ROLE rates_owner NOLOGIN;
    END IF;
    FOREACH slot IN ARRAY ARRAY['rates_app_a', 'rates_app_b'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = slot) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN IN ROLE rates_app', slot);
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rates_rotator') THEN
        CREATE ROLE rates_rotator NOLOGIN CREATEROLE;
    END IF;
END
$$;
-- ADMIN without INHERIT or SET: the rotator may manage the slots, not act as them.
GRANT rates_app_a, rates_app_b TO rates_rotator WITH ADMIN OPTION, INHERIT FALSE, SET FALSE;
-- Only a superuser may grant pg_signal_backend (an Azure-shaped administrator cannot);
-- 0008 revokes it again in favour of rates_credentials' functions.
DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        GRANT pg_signal_backend TO rates_rotator;
    END IF;
END
$$;
GRANT USAGE, CREATE ON SCHEMA public TO rates_owner;
