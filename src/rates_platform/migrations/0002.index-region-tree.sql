-- depends: 0001.create-rates-schema
-- Region trees are walked by parent. (/rates reads daily_totals, not prices.)
CREATE INDEX ports_parent_slug_idx ON ports (parent_slug);
CREATE INDEX regions_parent_slug_idx ON regions (parent_slug);
