-- 025_prepare_generic.sql — sg_mo_prepare's statements planned once per session.
--
-- PL/pgSQL plans a statement with parameters for the values of each call
-- until a generic plan costs no more than the custom ones. sg_mo_prepare's
-- statements take the batch as arrays, so for small batches (the batches of
-- a link at 1,000 MO/s hold about 5 MOs) the custom plan always looked
-- cheaper, and the duplicate and loop check was planned on every call: 0.3 of
-- the 1.2 ms of PostgreSQL's CPU a small batch's sg_mo_prepare took, the
-- subscriber read 0.07 more (tests/bench/sqlreplay.sh with REPLAY_PGSS=1).
-- Large batches got the generic plan after five calls anyway.
--
-- 014 kept this function's plans custom because its generic plan, made when
-- mo_messages was small, went on scanning the table as it grew. Since 019 the
-- function runs with enable_seqscan = off, so a generic plan reaches every
-- table through its indexes whatever the statistics said when it was made:
-- mo_messages by (link, smsc_id) and (msisdn, received_at), subscribers and
-- proficiency by their keys.

ALTER FUNCTION sg_mo_prepare(text[], text[], text[], text[], int, int, int)
    SET plan_cache_mode = force_generic_plan;
