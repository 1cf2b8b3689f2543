-- Submit results and delivery receipts without a global lock (issue 10).
--
-- Until this migration the two functions serialised on one advisory lock so
-- that a receipt overtaking its submit_sm_resp was never stranded: with both
-- transactions in flight at once, the receipt's transaction does not see the
-- part the results transaction is inserting, and the results transaction does
-- not see the early receipt being parked. That lock made results and receipts
-- wait for each other's commit under load. Now they commit concurrently and
-- the rare stranded receipt is matched by sg_dlr_rematch(), which the pipeline
-- runs every few seconds. Both functions lock mt_messages rows in id order, so
-- they do not deadlock on each other.
--
-- mt_parts rows are updated once by their receipt (state, dlr_err, at: none
-- of them indexed): room on each page makes that a HOT update, with no index
-- entries written.
ALTER TABLE mt_parts SET (fillfactor = 70);

-- Records submit_sm outcomes: one row per segment. status 0 = accepted with
-- smsc_id; a temporary error the gateway gave up retrying puts the message
-- back in the queue for later (failed after 10 attempts); any other status
-- fails the message with that status. Set-based: per message, the accepted
-- parts are counted first, then temporary errors (the last one gives the status), then
-- permanent ones (the first one fails the message). Same final state as
-- taking the rows one by one, except when a temporary error precedes, in the
-- same batch, the accepted part that completes the message (then submitted).
-- Receipts that overtook their submit_sm_resp are applied last.
CREATE OR REPLACE FUNCTION sg_mt_results(p_mt bigint[], p_part int[], p_nparts int[], p_link text[],
                              p_status int[], p_smsc text[], p_temp boolean[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(cardinality(p_mt), 0) = 0 THEN
        RETURN;
    END IF;

    -- accepted segments
    WITH r AS (
        SELECT t.* FROM unnest(p_mt, p_part, p_nparts, p_link, p_status, p_smsc)
               WITH ORDINALITY AS t(mt, part, nparts, link, status, smsc, i)
         WHERE t.status = 0),
    parts AS (
        INSERT INTO mt_parts AS q (mt_id, part, link, smsc_id)
        SELECT DISTINCT ON (r.mt, r.part) r.mt, r.part, r.link, r.smsc FROM r
         ORDER BY r.mt, r.part, r.i DESC
        ON CONFLICT ON CONSTRAINT mt_parts_pkey DO UPDATE SET smsc_id = excluded.smsc_id,
            link = excluded.link, state = 'submitted', at = now()),
    a AS (
        SELECT r.mt, count(*)::int AS n, (array_agg(r.nparts ORDER BY r.i DESC))[1] AS nparts,
               (array_agg(r.link ORDER BY r.i DESC))[1] AS link
          FROM r GROUP BY r.mt)
    UPDATE mt_messages m SET nparts = a.nparts, parts_ok = m.parts_ok + a.n, link = a.link,
           state = CASE WHEN m.state = 'submitting' AND m.parts_ok + a.n >= a.nparts
                        THEN 'submitted' ELSE m.state END,
           submitted_at = CASE WHEN m.parts_ok + a.n >= a.nparts THEN now() ELSE m.submitted_at END
      FROM (SELECT * FROM a ORDER BY a.mt) a
     WHERE m.id = a.mt;

    -- temporary errors: back to the queue (failed after 10 attempts)
    UPDATE mt_messages m SET error_status = a.status,
           state = CASE WHEN m.attempts >= 10 THEN 'failed' ELSE 'queued' END,
           final_at = CASE WHEN m.attempts >= 10 THEN now() END,
           next_attempt_at = now() + make_interval(secs => 30 * m.attempts)
      FROM (SELECT DISTINCT ON (t.mt) t.mt, t.status
              FROM unnest(p_mt, p_status, p_temp) WITH ORDINALITY AS t(mt, status, temp, i)
             WHERE t.status <> 0 AND t.temp
             ORDER BY t.mt, t.i DESC) a
     -- coalesce(): reach the messages from a by primary key, never by driving
     -- from mt_messages_inflight (see sg_mt_outcomes in 012)
     WHERE m.id = a.mt AND coalesce(m.state, '') = 'submitting';

    -- permanent errors
    UPDATE mt_messages m SET state = 'failed', error_status = a.status,
           nparts = CASE WHEN a.after_ok THEN a.nparts ELSE m.nparts END,
           link = CASE WHEN a.after_ok THEN a.link ELSE m.link END, final_at = now()
      FROM (SELECT DISTINCT ON (u.mt) u.mt, u.status, u.nparts, u.link,
                   -- no part of the message accepted after this error
                   u.last_ok IS NULL OR u.last_ok < u.i AS after_ok
              FROM (SELECT t.*, max(t.i) FILTER (WHERE t.status = 0)
                                    OVER (PARTITION BY t.mt) AS last_ok
                      FROM unnest(p_mt, p_status, p_temp, p_nparts, p_link)
                           WITH ORDINALITY AS t(mt, status, temp, nparts, link, i)) u
             WHERE u.status <> 0 AND NOT coalesce(u.temp, false)
             ORDER BY u.mt, u.i) a
     WHERE m.id = a.mt AND m.state IN ('submitting', 'submitted', 'queued');

    -- receipts that overtook their submit_sm_resp
    PERFORM sg_dlr_rematch(p_link, p_smsc);
END $$;

-- Applies delivery receipts (message_state values). Unmatched receipts wait
-- in dlr_early for their submit_sm_resp. Set-based: a receipt for a segment
-- no longer 'submitted' (a second receipt) changes nothing; per message,
-- delivered segments count first, then a failed or expired segment fails
-- (expires) the message if it is still in flight. Returns how many receipts
-- were parked.
CREATE OR REPLACE FUNCTION sg_dlr_apply(p_link text[], p_smsc text[], p_state int[], p_err int[])
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    n_parked int;
BEGIN
    IF coalesce(cardinality(p_smsc), 0) = 0 THEN
        RETURN 0;
    END IF;
    WITH r AS MATERIALIZED (
        -- final receipts only (enroute, accepted, unknown: nothing final yet);
        -- the first receipt of a segment is the one that counts
        SELECT DISTINCT ON (t.link, t.smsc) t.link, t.smsc, t.state, t.err, t.i,
               CASE t.state WHEN 2 THEN 'delivered' WHEN 3 THEN 'expired'
                            ELSE 'failed' END AS part_state
          FROM unnest(p_link, p_smsc, p_state, p_err) WITH ORDINALITY AS t(link, smsc, state, err, i)
         WHERE t.state IN (2, 3, 4, 5, 8)
         ORDER BY t.link, t.smsc, t.i),
    u AS (
        UPDATE mt_parts p SET state = r.part_state, dlr_err = r.err, at = now()
          FROM r
         WHERE p.link = r.link AND p.smsc_id = r.smsc AND p.state = 'submitted'
        RETURNING p.mt_id, r.part_state, r.err, r.i),
    early AS (
        INSERT INTO dlr_early AS e (link, smsc_id, state, err)
        SELECT DISTINCT ON (t.link, t.smsc) t.link, t.smsc, t.state, t.err
          FROM unnest(p_link, p_smsc, p_state, p_err) WITH ORDINALITY AS t(link, smsc, state, err, i)
         WHERE t.state IN (2, 3, 4, 5, 8)
           AND NOT EXISTS (SELECT 1 FROM mt_parts p WHERE p.link = t.link AND p.smsc_id = t.smsc)
         ORDER BY t.link, t.smsc, t.i DESC
        ON CONFLICT ON CONSTRAINT dlr_early_pkey DO UPDATE SET state = excluded.state,
            err = excluded.err
        RETURNING 1),
    a AS (
        SELECT u.mt_id, count(*) FILTER (WHERE u.part_state = 'delivered')::int AS n_del,
               (array_agg(u.part_state ORDER BY u.i DESC)
                    FILTER (WHERE u.part_state <> 'delivered'))[1] AS fail,
               (array_agg(u.err ORDER BY u.i DESC)
                    FILTER (WHERE u.part_state <> 'delivered'))[1] AS fail_err
          FROM u GROUP BY u.mt_id),
    msg AS (
        UPDATE mt_messages m SET parts_delivered = m.parts_delivered + a.n_del,
           state = CASE WHEN a.fail IS NOT NULL AND m.state IN ('submitting', 'submitted')
                             AND NOT (m.state = 'submitted' AND a.n_del > 0
                                      AND m.parts_delivered + a.n_del >= m.nparts)
                        THEN a.fail
                        WHEN m.state = 'submitted' AND a.n_del > 0
                             AND m.parts_delivered + a.n_del >= m.nparts THEN 'delivered'
                        ELSE m.state END,
           error_status = CASE WHEN a.fail IS NOT NULL AND m.state IN ('submitting', 'submitted')
                                    AND NOT (m.state = 'submitted' AND a.n_del > 0
                                             AND m.parts_delivered + a.n_del >= m.nparts)
                               THEN coalesce(a.fail_err, m.error_status) ELSE m.error_status END,
           final_at = CASE WHEN a.fail IS NOT NULL AND m.state IN ('submitting', 'submitted')
                           THEN now()
                           WHEN a.n_del > 0 AND m.parts_delivered + a.n_del >= m.nparts THEN now()
                           ELSE m.final_at END
          FROM (SELECT * FROM a ORDER BY a.mt_id) a
         WHERE m.id = a.mt_id)
    SELECT count(*) INTO n_parked FROM early;
    RETURN n_parked;
END $$;


-- Receipts parked in dlr_early whose part has been recorded since: applied
-- now. With p_link/p_smsc only those segments (sg_mt_results, for receipts
-- that overtook their submit_sm_resp); without, all of them (the pipeline's
-- periodic rematch, for receipts whose results were committed later by a
-- retry or by another instance). Returns the number matched.
CREATE FUNCTION sg_dlr_rematch(p_link text[] DEFAULT NULL, p_smsc text[] DEFAULT NULL)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    e_link text[];
    e_smsc text[];
    e_state int[];
    e_err int[];
BEGIN
    -- Two statements, not one with "p_link IS NULL OR ...": PL/pgSQL caches a
    -- generic plan, and for that predicate it is a hash join over all of
    -- mt_parts (tens of milliseconds per submit-results batch).
    IF p_link IS NULL THEN
        WITH del AS (
            DELETE FROM dlr_early e
             WHERE EXISTS (SELECT 1 FROM mt_parts p WHERE p.link = e.link AND p.smsc_id = e.smsc_id)
            RETURNING e.link, e.smsc_id, e.state, e.err)
        SELECT array_agg(del.link), array_agg(del.smsc_id), array_agg(del.state::int), array_agg(del.err)
          INTO e_link, e_smsc, e_state, e_err
          FROM del;
    ELSE
        WITH del AS (
            DELETE FROM dlr_early e
             USING (SELECT DISTINCT t.link, t.smsc FROM unnest(p_link, p_smsc) AS t(link, smsc)) t
             WHERE e.link = t.link AND e.smsc_id = t.smsc
               AND EXISTS (SELECT 1 FROM mt_parts p WHERE p.link = e.link AND p.smsc_id = e.smsc_id)
            RETURNING e.link, e.smsc_id, e.state, e.err)
        SELECT array_agg(del.link), array_agg(del.smsc_id), array_agg(del.state::int), array_agg(del.err)
          INTO e_link, e_smsc, e_state, e_err
          FROM del;
    END IF;
    IF e_link IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM sg_dlr_apply(e_link, e_smsc, e_state, e_err);
    RETURN cardinality(e_link);
END $$;
