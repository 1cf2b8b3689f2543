-- 020_fast_ids_linear.sql — a batch's SMSC ids read in time linear in its size.
--
-- sg_mt_fast (018) gave each message whole and delivered its SMSC ids with a
-- slice, f_smsc[off + 1 : off + nparts]. A slice of a text array copies the
-- whole array flat and walks it from its first element to the slice: work in
-- the array's size for every message, so a batch cost the square of its size.
-- perf on the quick bench's MO run put 11 % of PostgreSQL's CPU under
-- array_get_slice (batches reach thousands of segments when links are busy):
-- 2,000 messages of 4 segments took 55 ms, 92 of them 0.18 ms.
--
-- Now each id is read by subscript, f_smsc[off + k], under a generic plan:
-- PL/pgSQL keeps an array argument expanded (its elements deconstructed
-- once), and a generic plan reads it as a parameter, so each subscript is a
-- lookup (2,000 messages: 5.3 ms; 92: 0.15 ms). A custom plan would not do:
-- it puts the array in the plan as a flat constant, and a subscript of a flat
-- text array walks it from the start.
--
-- sg_mt_outcomes' part-by-part remainder (018) reads f_smsc[off + k] and
-- f_err[off + k] the same way, but sg_mt_outcomes was planned custom for each
-- batch (012: then its fast path joined the batch's arrays, and a generic
-- plan nest-looped them). Since 018 it reaches no table and joins nothing
-- (the fast path is sg_mt_fast, a function of its own; results and receipts
-- go to sg_mt_results and sg_dlr_apply, planned by their own settings), so
-- it is now planned generically too, and its body stays as 018 wrote it.

-- As in 018, each message's ids read by subscript under a generic plan.
CREATE OR REPLACE FUNCTION sg_mt_fast(f_mt bigint[], f_nparts int[], f_link text[], f_smsc text[])
RETURNS bigint[] LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off
SET enable_mergejoin = off AS $$
DECLARE
    v_done bigint[];
BEGIN
    WITH f AS (
        SELECT t.mt, t.nparts, t.link,
               (sum(t.nparts) OVER (ORDER BY t.i) - t.nparts)::int AS off
          FROM unnest(f_mt, f_nparts, f_link) WITH ORDINALITY AS t(mt, nparts, link, i)),
    m AS (
        UPDATE mt_messages m SET nparts = f.nparts, parts_ok = f.nparts,
               parts_delivered = f.nparts, link = f.link, state = 'delivered',
               smsc_ids = ARRAY(SELECT f_smsc[f.off + k] FROM generate_series(1, f.nparts) AS k),
               submitted_at = now(), final_at = now()
          FROM (SELECT * FROM f ORDER BY f.mt) f
         -- coalesce(): not the predicate of mt_messages_inflight (see 013)
         WHERE m.id = f.mt AND coalesce(m.state, '') = 'submitting' AND m.parts_ok = 0
           AND m.parts_delivered = 0
        RETURNING m.id)
    SELECT array_agg(m.id) INTO v_done FROM m;
    RETURN coalesce(v_done, '{}');
END $$;

ALTER FUNCTION sg_mt_outcomes(bigint[], int[], int[], text[], int[], text[], boolean[],
                              text[], text[], int[], int[],
                              bigint[], int[], text[], text[], int[])
    SET plan_cache_mode = force_generic_plan;
