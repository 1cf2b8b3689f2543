-- 022_subscribers_fillfactor.sql — room on each page for a subscriber's next version.
--
-- Every MO rewrites its number's subscribers row (flow_state, flow_state_at,
-- last_mo_at); since 021 no index names those columns, so the rewrite can be
-- HOT: the new version on the same page, no new index entries. But it needs
-- free space on that page, and the rows of numbers that write in together are
-- inserted together, filling their pages to the brim. So most answers still
-- moved their row to another page, with an entry in each of the table's
-- indexes: in the bench's MO runs 26 % of the subscriber updates were HOT, and
-- the table grew to 440 bytes per row. With 30 % of each page kept free at
-- insert, 58 % were (the rest are a quiz's start and end, which change
-- quiz_open, indexed on purpose; see 021), at 163 bytes per row, and
-- PostgreSQL's CPU per MO fell by about 4 %, inside the host's noise (README,
-- Benchmarks).
--
-- Pages already written keep their packing until the table is rewritten
-- (VACUUM FULL, or pg_repack without the exclusive lock); new pages get the
-- room. Nothing is rewritten here.

ALTER TABLE subscribers SET (fillfactor = 70);
