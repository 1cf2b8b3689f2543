-- 018_fast_in_daemon.sql — the daemon says which messages are whole and delivered.
--
-- 013's fast path found, inside sg_mt_outcomes, the messages whose every
-- segment was accepted and delivered within the batch: it sorted and joined
-- every result and receipt of the batch (DISTINCT ON, a hash join on
-- (link, SMSC id), a grouping), planned afresh on each call because a plan
-- kept for small arrays would nest-loop big ones. The daemon has all of
-- that in memory already (core/outbatch.c): it now sends those messages as
-- one row each (id, parts, link, and per part in order its SMSC id and its
-- receipt's error), and leaves their results and receipts out of the
-- per-row arrays. What is left here is one update by primary key.
--
-- A message the daemon sends that way whose row is not in the state the
-- fast path needs (not 'submitting' with nothing recorded: e.g. a resend
-- after a restart) is not lost: its results and receipts are rebuilt from
-- the same arrays and go the general way (sg_mt_results, sg_dlr_apply).

-- Writes the messages whole and delivered; returns the ids written.
CREATE FUNCTION sg_mt_fast(f_mt bigint[], f_nparts int[], f_link text[], f_smsc text[])
RETURNS bigint[] LANGUAGE plpgsql
-- its one statement reaches mt_messages by primary key from the arrays: a
-- plan kept for the session is right for any batch and any table size
SET plan_cache_mode = auto SET enable_seqscan = off SET enable_hashjoin = off
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
               smsc_ids = f_smsc[f.off + 1 : f.off + f.nparts],
               submitted_at = now(), final_at = now()
          FROM (SELECT * FROM f ORDER BY f.mt) f
         -- coalesce(): not the predicate of mt_messages_inflight (see 013)
         WHERE m.id = f.mt AND coalesce(m.state, '') = 'submitting' AND m.parts_ok = 0
           AND m.parts_delivered = 0
        RETURNING m.id)
    SELECT array_agg(m.id) INTO v_done FROM m;
    RETURN coalesce(v_done, '{}');
END $$;

-- Submit results and receipts of one batch, in one transaction: the
-- messages whole and delivered (f_*) written once, final; the other
-- results (p_*), then the other receipts (d_*), as before (sg_mt_results,
-- sg_dlr_apply). Returns the number of receipts parked.
CREATE FUNCTION sg_mt_outcomes(p_mt bigint[], p_part int[], p_nparts int[], p_link text[],
                               p_status int[], p_smsc text[], p_temp boolean[],
                               d_link text[], d_smsc text[], d_state int[], d_err int[],
                               f_mt bigint[], f_nparts int[], f_link text[], f_smsc text[],
                               f_err int[])
RETURNS int LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan SET jit = off AS $$
DECLARE
    v_done bigint[];
BEGIN
    IF coalesce(cardinality(f_mt), 0) > 0 THEN
        v_done := sg_mt_fast(f_mt, f_nparts, f_link, f_smsc);
        IF cardinality(v_done) < cardinality(f_mt) THEN
            -- the rest of them, segment by segment: each part's result
            -- (accepted) ahead of the other results, its receipt
            -- (delivered) ahead of the other receipts
            WITH a AS (
                SELECT t.mt, t.nparts, t.link, t.i,
                       (sum(t.nparts) OVER (ORDER BY t.i) - t.nparts)::int AS off
                  FROM unnest(f_mt, f_nparts, f_link) WITH ORDINALITY AS t(mt, nparts, link, i)),
            f AS (
                -- (offsets into f_smsc / f_err counted over all of them, first)
                SELECT a.* FROM a WHERE a.mt <> ALL (v_done)),
            s AS (
                SELECT f.mt, k AS part, f.nparts, f.link, f_smsc[f.off + k] AS smsc,
                       f_err[f.off + k] AS err, f.i
                  FROM f CROSS JOIN LATERAL generate_series(1, f.nparts) AS k)
            SELECT array_agg(s.mt ORDER BY s.i, s.part) || coalesce(p_mt, '{}'),
                   array_agg(s.part ORDER BY s.i, s.part) || coalesce(p_part, '{}'),
                   array_agg(s.nparts ORDER BY s.i, s.part) || coalesce(p_nparts, '{}'),
                   array_agg(s.link ORDER BY s.i, s.part) || coalesce(p_link, '{}'),
                   array_agg(0 ORDER BY s.i, s.part) || coalesce(p_status, '{}'),
                   array_agg(s.smsc ORDER BY s.i, s.part) || coalesce(p_smsc, '{}'),
                   array_agg(false ORDER BY s.i, s.part) || coalesce(p_temp, '{}'),
                   array_agg(s.link ORDER BY s.i, s.part) || coalesce(d_link, '{}'),
                   array_agg(s.smsc ORDER BY s.i, s.part) || coalesce(d_smsc, '{}'),
                   array_agg(2 ORDER BY s.i, s.part) || coalesce(d_state, '{}'),
                   array_agg(s.err ORDER BY s.i, s.part) || coalesce(d_err, '{}')
              INTO p_mt, p_part, p_nparts, p_link, p_status, p_smsc, p_temp,
                   d_link, d_smsc, d_state, d_err
              FROM s;
        END IF;
    END IF;
    PERFORM sg_mt_results(p_mt, p_part, p_nparts, p_link, p_status, p_smsc, p_temp);
    RETURN sg_dlr_apply(d_link, d_smsc, d_state, d_err); -- receipts parked
END $$;

-- The 11-argument form (013) is what a daemon of the previous version calls
-- during an upgrade: its results and receipts now go the general way (correct,
-- part by part), and the fast path has one implementation, sg_mt_fast.
CREATE OR REPLACE FUNCTION sg_mt_outcomes(p_mt bigint[], p_part int[], p_nparts int[], p_link text[],
                               p_status int[], p_smsc text[], p_temp boolean[],
                               d_link text[], d_smsc text[], d_state int[], d_err int[])
RETURNS int LANGUAGE sql AS $$
    SELECT sg_mt_outcomes(p_mt, p_part, p_nparts, p_link, p_status, p_smsc, p_temp,
                          d_link, d_smsc, d_state, d_err,
                          '{}'::bigint[], '{}'::int[], '{}'::text[], '{}'::text[], '{}'::int[])
$$;
