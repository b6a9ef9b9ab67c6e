-- forja control plane, schema 7: continual learning. A job records the
-- mix it trains on (its new examples are the ones it claimed; the replayed
-- earlier examples, the general replay rows and the version it warm-starts
-- from are here), so a resumed job trains on exactly the same data and a
-- version's lineage names every row.

ALTER TABLE jobs ADD COLUMN mix TEXT;
