-- 012_outcomes.sql — submit results and receipts committed together.
--
-- The daemon sends submit_sm results and delivery receipts in one stream, one
-- batch at a time (core/pipeline.c). Results go first: a receipt in the same
-- batch as its submit_sm_resp finds the part just recorded, and a receipt in a
-- later batch finds it committed. Before, results and receipts committed in
-- two concurrent transactions and, under load, most receipts lost the race,
-- were parked in dlr_early and waited for sg_dlr_rematch.
--
-- Under load nearly every segment's result and receipt arrive within a few
-- milliseconds and so land in the same batch. For a message whose every
-- segment was accepted and delivered within the batch (and that has no
-- earlier result), the outcome is written at once: one update of the message
-- ('delivered') and each part inserted final, instead of a part inserted then
-- updated and the message updated twice. Everything else takes
-- sg_mt_results then sg_dlr_apply, with the same end state.
--
-- Returns how many receipts of the batch are parked (those that overtook
-- their submit_sm_resp).
CREATE FUNCTION sg_mt_outcomes(p_mt bigint[], p_part int[], p_nparts int[], p_link text[],
                               p_status int[], p_smsc text[], p_temp boolean[],
                               d_link text[], d_smsc text[], d_state int[], d_err int[])
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_fast bigint[];
BEGIN
    IF coalesce(cardinality(p_mt), 0) > 0 AND coalesce(cardinality(d_smsc), 0) > 0 THEN
        WITH r AS MATERIALIZED (
            -- accepted segments, the last result of a segment counts
            SELECT DISTINCT ON (t.mt, t.part) t.mt, t.part, t.nparts, t.link, t.smsc
              FROM unnest(p_mt, p_part, p_nparts, p_link, p_status, p_smsc)
                   WITH ORDINALITY AS t(mt, part, nparts, link, status, smsc, i)
             WHERE t.status = 0
             ORDER BY t.mt, t.part, t.i DESC),
        bad AS (
            SELECT DISTINCT t.mt FROM unnest(p_mt, p_status) AS t(mt, status) WHERE t.status <> 0),
        d AS MATERIALIZED (
            -- final receipts, the first one of a segment counts (as in sg_dlr_apply)
            SELECT DISTINCT ON (t.link, t.smsc) t.link, t.smsc, t.state, t.err
              FROM unnest(d_link, d_smsc, d_state, d_err) WITH ORDINALITY AS t(link, smsc, state, err, i)
             WHERE t.state IN (2, 3, 4, 5, 8)
             ORDER BY t.link, t.smsc, t.i),
        f AS (
            SELECT r.mt, min(r.nparts) AS nparts, (array_agg(r.link))[1] AS link
              FROM r LEFT JOIN d ON d.link = r.link AND d.smsc = r.smsc
             WHERE NOT EXISTS (SELECT 1 FROM bad WHERE bad.mt = r.mt)
             GROUP BY r.mt
            HAVING count(*) = min(r.nparts) AND min(r.nparts) = max(r.nparts)
               AND count(*) FILTER (WHERE d.state = 2) = count(*)),
        m AS (
            UPDATE mt_messages m SET nparts = f.nparts, parts_ok = f.nparts,
                   parts_delivered = f.nparts, link = f.link, state = 'delivered',
                   submitted_at = now(), final_at = now()
              FROM (SELECT * FROM f ORDER BY f.mt) f
             -- coalesce(): not the predicate of mt_messages_inflight, so the
             -- messages are reached from f by primary key; driving from that
             -- index (estimated at a row) re-ran f for every in-flight message
             WHERE m.id = f.mt AND coalesce(m.state, '') = 'submitting' AND m.parts_ok = 0
               AND m.parts_delivered = 0
            RETURNING m.id),
        ins AS (
            INSERT INTO mt_parts AS q (mt_id, part, link, smsc_id, state, dlr_err)
            SELECT r.mt, r.part, r.link, r.smsc, 'delivered', d.err
              FROM r JOIN m ON m.id = r.mt JOIN d ON d.link = r.link AND d.smsc = r.smsc
             ORDER BY r.mt, r.part
            ON CONFLICT ON CONSTRAINT mt_parts_pkey DO UPDATE SET smsc_id = excluded.smsc_id,
                link = excluded.link, state = excluded.state, dlr_err = excluded.dlr_err,
                at = now())
        SELECT array_agg(m.id) INTO v_fast FROM m;

        IF v_fast IS NOT NULL THEN
            -- what is left for the general path: the receipts of segments not
            -- written above (computed first, from all results), and the other
            -- messages' results
            WITH done AS (
                SELECT DISTINCT t.link, t.smsc
                  FROM unnest(p_mt, p_link, p_smsc) AS t(mt, link, smsc)
                  JOIN unnest(v_fast) AS f(id) ON f.id = t.mt)
            SELECT array_agg(t.link ORDER BY t.i), array_agg(t.smsc ORDER BY t.i),
                   array_agg(t.state ORDER BY t.i), array_agg(t.err ORDER BY t.i)
              INTO d_link, d_smsc, d_state, d_err
              FROM unnest(d_link, d_smsc, d_state, d_err) WITH ORDINALITY AS t(link, smsc, state, err, i)
             WHERE NOT EXISTS (SELECT 1 FROM done WHERE done.link = t.link AND done.smsc = t.smsc);
            SELECT array_agg(t.mt ORDER BY t.i), array_agg(t.part ORDER BY t.i),
                   array_agg(t.nparts ORDER BY t.i), array_agg(t.link ORDER BY t.i),
                   array_agg(t.status ORDER BY t.i), array_agg(t.smsc ORDER BY t.i),
                   array_agg(t.temp ORDER BY t.i)
              INTO p_mt, p_part, p_nparts, p_link, p_status, p_smsc, p_temp
              FROM unnest(p_mt, p_part, p_nparts, p_link, p_status, p_smsc, p_temp)
                   WITH ORDINALITY AS t(mt, part, nparts, link, status, smsc, temp, i)
             WHERE NOT EXISTS (SELECT 1 FROM unnest(v_fast) AS f(id) WHERE f.id = t.mt);
        END IF;
    END IF;

    PERFORM sg_mt_results(p_mt, p_part, p_nparts, p_link, p_status, p_smsc, p_temp);
    RETURN sg_dlr_apply(d_link, d_smsc, d_state, d_err); -- receipts parked
END $$;

-- Planned for each batch: after five calls PL/pgSQL would switch to a generic
-- plan, which for the fast path above joins the batch's CTEs by nested loops
-- (a batch of 8,000 results: 84 ms planned for it, 2.4 s generic). No JIT:
-- for a batch of a few thousand rows compiling costs more than the statements.
ALTER FUNCTION sg_mt_outcomes(bigint[], int[], int[], text[], int[], text[], boolean[],
                              text[], text[], int[], int[])
    SET plan_cache_mode = force_custom_plan SET jit = off;

-- mt_parts rows are written only by sg_mt_results / sg_mt_outcomes, for ids
-- the daemon read from mt_messages, and nothing deletes messages. The foreign
-- key check cost a row lock on the message (a WAL record and a buffer write)
-- for every submitted segment.
ALTER TABLE mt_parts DROP CONSTRAINT IF EXISTS mt_parts_mt_id_fkey;
