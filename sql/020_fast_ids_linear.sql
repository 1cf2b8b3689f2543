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
-- text array walks it from the start. sg_mt_outcomes' part-by-part remainder
-- read f_smsc[off + k] under its custom plans: it now gets its segments from
-- sg_fast_segments, which is planned generically too.

-- One row per segment of the messages f_* (batch order, then part order)
-- whose id is not in p_skip: the message's id, part number, part count and
-- link, and the segment's SMSC id and receipt error (f_smsc / f_err at the
-- segment's position).
CREATE FUNCTION sg_fast_segments(f_mt bigint[], f_nparts int[], f_link text[], f_smsc text[],
                                 f_err int[], p_skip bigint[])
RETURNS TABLE (mt bigint, part int, nparts int, link text, smsc text, err int)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off
SET enable_mergejoin = off AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH a AS (
            SELECT t.mt, t.nparts, t.link, t.i,
                   (sum(t.nparts) OVER (ORDER BY t.i) - t.nparts)::int AS off
              FROM unnest(f_mt, f_nparts, f_link) WITH ORDINALITY AS t(mt, nparts, link, i))
        SELECT a.mt, k, a.nparts, a.link, f_smsc[a.off + k], f_err[a.off + k]
          FROM a CROSS JOIN LATERAL generate_series(1, a.nparts) AS k
         WHERE a.mt <> ALL (coalesce(p_skip, '{}'))
         ORDER BY a.i, k;
END $$;

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

-- As in 018, with the remainder's segments from sg_fast_segments.
CREATE OR REPLACE FUNCTION sg_mt_outcomes(p_mt bigint[], p_part int[], p_nparts int[], p_link text[],
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
            SELECT array_agg(s.mt ORDER BY s.j) || coalesce(p_mt, '{}'),
                   array_agg(s.part ORDER BY s.j) || coalesce(p_part, '{}'),
                   array_agg(s.nparts ORDER BY s.j) || coalesce(p_nparts, '{}'),
                   array_agg(s.link ORDER BY s.j) || coalesce(p_link, '{}'),
                   array_agg(0 ORDER BY s.j) || coalesce(p_status, '{}'),
                   array_agg(s.smsc ORDER BY s.j) || coalesce(p_smsc, '{}'),
                   array_agg(false ORDER BY s.j) || coalesce(p_temp, '{}'),
                   array_agg(s.link ORDER BY s.j) || coalesce(d_link, '{}'),
                   array_agg(s.smsc ORDER BY s.j) || coalesce(d_smsc, '{}'),
                   array_agg(2 ORDER BY s.j) || coalesce(d_state, '{}'),
                   array_agg(s.err ORDER BY s.j) || coalesce(d_err, '{}')
              INTO p_mt, p_part, p_nparts, p_link, p_status, p_smsc, p_temp,
                   d_link, d_smsc, d_state, d_err
              FROM sg_fast_segments(f_mt, f_nparts, f_link, f_smsc, f_err, v_done)
                   WITH ORDINALITY AS s(mt, part, nparts, link, smsc, err, j);
        END IF;
    END IF;
    PERFORM sg_mt_results(p_mt, p_part, p_nparts, p_link, p_status, p_smsc, p_temp);
    RETURN sg_dlr_apply(d_link, d_smsc, d_state, d_err); -- receipts parked
END $$;
