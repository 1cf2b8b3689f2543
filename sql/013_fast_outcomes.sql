-- 013_fast_outcomes.sql — a message delivered within one outcome batch keeps
-- its segments' SMSC ids on its own row.
--
-- sg_mt_outcomes' fast path (012) wrote such a message once, final, but still
-- inserted one mt_parts row per segment: in the MO bench (Vietnamese replies
-- in UCS-2, four segments per MO) the part rows, their two index entries and
-- their WAL were a third of the outcome work. mt_parts is the mapping a
-- receipt needs to find its message (§5.2: "keep the mapping until a final
-- state"); a message final on arrival of its batch needs none. Its SMSC ids,
-- in part order, go to mt_messages.smsc_ids instead (for operators tracing a
-- message with the SMSC); mt_segments shows every segment, wherever it is
-- kept. The daemon now holds a message's results back one batch when the
-- rest of its segments or receipts are still on their way (core/outbatch.c),
-- so nearly every message takes this path.
--
-- A later duplicate receipt for such a message finds no part and is parked in
-- dlr_early like any unknown receipt; parked receipts are now dropped after a
-- day (sg_dlr_early_expire), so unknown ones no longer pile up.

ALTER TABLE mt_messages ADD COLUMN IF NOT EXISTS smsc_ids text[];

-- Every submitted segment: those still tracked or tracked until their final
-- receipt (mt_parts), and those of messages delivered at once (smsc_ids).
CREATE OR REPLACE VIEW mt_segments AS
SELECT p.mt_id, p.part, p.link, p.smsc_id, p.state, p.dlr_err, p.at
  FROM mt_parts p
UNION ALL
SELECT m.id, s.part::smallint, m.link, s.smsc_id, 'delivered', NULL::int, m.final_at
  FROM mt_messages m
 CROSS JOIN LATERAL unnest(m.smsc_ids) WITH ORDINALITY AS s(smsc_id, part)
 WHERE m.smsc_ids IS NOT NULL;

-- As in 012, but the fast path writes no part rows.
CREATE OR REPLACE FUNCTION sg_mt_outcomes(p_mt bigint[], p_part int[], p_nparts int[], p_link text[],
                               p_status int[], p_smsc text[], p_temp boolean[],
                               d_link text[], d_smsc text[], d_state int[], d_err int[])
RETURNS int LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan SET jit = off AS $$
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
            SELECT r.mt, min(r.nparts) AS nparts, (array_agg(r.link))[1] AS link,
                   array_agg(r.smsc ORDER BY r.part) AS smsc_ids
              FROM r LEFT JOIN d ON d.link = r.link AND d.smsc = r.smsc
             WHERE NOT EXISTS (SELECT 1 FROM bad WHERE bad.mt = r.mt)
             GROUP BY r.mt
            HAVING count(*) = min(r.nparts) AND min(r.nparts) = max(r.nparts)
               AND count(*) FILTER (WHERE d.state = 2) = count(*)),
        m AS (
            UPDATE mt_messages m SET nparts = f.nparts, parts_ok = f.nparts,
                   parts_delivered = f.nparts, link = f.link, state = 'delivered', smsc_ids = f.smsc_ids,
                   submitted_at = now(), final_at = now()
              FROM (SELECT * FROM f ORDER BY f.mt) f
             -- coalesce(): not the predicate of mt_messages_inflight, so the
             -- messages are reached from f by primary key; driving from that
             -- index (estimated at a row) re-ran f for every in-flight message
             WHERE m.id = f.mt AND coalesce(m.state, '') = 'submitting' AND m.parts_ok = 0
               AND m.parts_delivered = 0
            RETURNING m.id)
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

-- Parked receipts older than a day: a day is long past any submit_sm_resp, so
-- what is still parked is a receipt for a message tracked elsewhere (another
-- system, or a duplicate receipt for a message delivered at once). Dropped by
-- the pipeline's periodic rematch (core/pipeline.c); returns how many.
CREATE FUNCTION sg_dlr_early_expire() RETURNS int LANGUAGE sql AS $$
    WITH d AS (DELETE FROM dlr_early e WHERE e.at < now() - interval '1 day' RETURNING 1)
    SELECT count(*)::int FROM d
$$;
