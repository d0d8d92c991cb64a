-- The schema of the sample dump (db/rates.sql, PostgreSQL 13.5), unchanged.
CREATE TABLE regions (
    slug text PRIMARY KEY,
    name text NOT NULL,
    parent_slug text REFERENCES regions (slug)
);

CREATE TABLE ports (
    code text PRIMARY KEY,
    name text NOT NULL,
    parent_slug text NOT NULL REFERENCES regions (slug)
);

CREATE TABLE prices (
    orig_code text NOT NULL REFERENCES ports (code),
    dest_code text NOT NULL REFERENCES ports (code),
    day date NOT NULL,
    price integer NOT NULL
);
