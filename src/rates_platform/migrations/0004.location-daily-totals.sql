-- depends: 0003.application-role
-- Pre-aggregated daily totals for every pair of locations (port or region, at any
-- level), so any /rates query reads exactly one row per day from this primary key,
-- however many lanes its regions cover. Rebuilt by every data load.
CREATE TABLE location_daily_totals (
    orig_loc text NOT NULL,
    dest_loc text NOT NULL,
    day date NOT NULL,
    price_count integer NOT NULL,
    price_total bigint NOT NULL,
    PRIMARY KEY (orig_loc, dest_loc, day)
);
GRANT SELECT ON location_daily_totals TO rates_app;
