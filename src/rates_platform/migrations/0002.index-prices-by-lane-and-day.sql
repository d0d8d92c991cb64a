-- depends: 0001.create-rates-schema
-- /rates filters by lane and a day range: this serves it as an index-only scan.
CREATE INDEX prices_lane_day_idx ON prices (orig_code, dest_code, day) INCLUDE (price);
-- Region trees are walked by parent.
CREATE INDEX ports_parent_slug_idx ON ports (parent_slug);
CREATE INDEX regions_parent_slug_idx ON regions (parent_slug);
