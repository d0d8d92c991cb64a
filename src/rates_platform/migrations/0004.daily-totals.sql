-- depends: 0003.application-role
-- Daily price counts and sums, pre-aggregated so that any /rates query reads at most
-- one primary-key range per region below its region. Rows are keyed by:
--   (port, port)                     one lane
--   (port, region) / (region, port)  the ports directly in that region only
--   (region, region)                 every port anywhere below each region
-- Port codes and region slugs must differ (the rebuild checks it).
-- Rebuilt from prices by every data load, then vacuumed so reads stay index-only.
CREATE TABLE daily_totals (
    orig_key text NOT NULL,
    dest_key text NOT NULL,
    day date NOT NULL,
    price_count integer NOT NULL,
    price_total bigint NOT NULL,
    CONSTRAINT daily_totals_pkey PRIMARY KEY (orig_key, dest_key, day)
        INCLUDE (price_count, price_total)  -- index-only scans
);
GRANT SELECT ON daily_totals TO rates_app;
