-- 015_claim_plans.sql — bulk claims look their batch up by id.
--
-- sg_mt_claim_guarded and sg_bulk_guard (004) re-read the rows just claimed
-- with "id = ANY (batch) AND state = 'queued'". Right after a broadcast
-- queued 200,000 messages, before ANALYZE had seen them, the planner took
-- state = 'queued' to match a few hundred rows and read the batch through
-- the partial index mt_messages_due: every queued message scanned, 200,000
-- rows, to find 512 (255 ms per claim). The first broadcast run of the bench
-- took 105 s instead of 13. coalesce() is not the index's predicate, so the
-- batch is found by primary key whatever the statistics say. Likewise the
-- numbers to lock are read from the batch first ("= ANY (ARRAY(...))"):
-- as a semi-join the planner merged it along mt_messages_msisdn, reading
-- 345,000 index entries for 512 messages. On a synthetic table (400,000
-- messages, then 200,000 queued and not analysed) a claim of 512 took
-- 155 ms before, 16 ms after (that statement: 185 ms, then 7 ms).

-- As in 004, the batch re-read by id.
CREATE OR REPLACE FUNCTION sg_bulk_guard(p_ids bigint[], p_now timestamptz DEFAULT NULL)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    cs campaign_settings;
    v_camp bigint[];
    v_ok bigint[];
    v_allowed timestamptz;
    v_day timestamptz;
    v_tomorrow timestamptz;
BEGIN
    IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
        RETURN coalesce(p_ids, '{}');
    END IF;
    SELECT * INTO cs FROM campaign_settings;
    v_camp := ARRAY(SELECT m.id FROM mt_messages m
                     WHERE m.id = ANY (p_ids) AND m.kind IN ('broadcast', 'reminder')
                       AND coalesce(m.state, '') = 'queued');
    IF cardinality(v_camp) = 0 THEN
        RETURN p_ids;
    END IF;
    v_ok := ARRAY(SELECT x FROM unnest(p_ids) x WHERE x <> ALL (v_camp));

    -- opted out since it was queued
    WITH c AS (
        UPDATE mt_messages m SET state = 'cancelled', final_at = v_now
          FROM subscribers s
         WHERE m.id = ANY (v_camp) AND s.msisdn = m.msisdn AND s.opted_out
        RETURNING m.id)
    SELECT ARRAY(SELECT x FROM unnest(v_camp) x WHERE x NOT IN (SELECT id FROM c)) INTO v_camp;

    -- quiet hours
    v_allowed := sg_next_allowed(v_now, cs.timezone, cs.quiet_hours);
    IF v_allowed > v_now THEN
        UPDATE mt_messages m SET next_attempt_at = v_allowed WHERE m.id = ANY (v_camp);
        RETURN v_ok;
    END IF;

    -- serialise per number, then the daily cap
    v_day := sg_local_day_start(v_now, cs.timezone);
    v_tomorrow := sg_next_allowed((date_trunc('day', v_now AT TIME ZONE cs.timezone) + interval '1 day')
                                  AT TIME ZONE cs.timezone, cs.timezone, cs.quiet_hours);
    WITH locked AS (
        SELECT s.msisdn FROM subscribers s
         WHERE s.msisdn = ANY (ARRAY(SELECT m.msisdn FROM mt_messages m WHERE m.id = ANY (v_camp)))
         ORDER BY s.msisdn FOR NO KEY UPDATE SKIP LOCKED),
    cand AS (
        SELECT m.id, m.msisdn, m.expires_at,
               row_number() OVER (PARTITION BY m.msisdn ORDER BY m.next_attempt_at, m.id) AS rn
          FROM mt_messages m
         WHERE m.id = ANY (v_camp)
           AND (m.msisdn IN (SELECT msisdn FROM locked)
                OR NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.msisdn = m.msisdn))),
    sent AS (
        SELECT d.msisdn, (SELECT count(*) FROM mt_messages x
                           WHERE x.msisdn = d.msisdn AND x.kind IN ('broadcast', 'reminder')
                             AND x.id <> ALL (v_camp)
                             AND (x.state = 'submitting' OR x.submitted_at >= v_day)) AS n
          FROM (SELECT DISTINCT msisdn FROM cand) d),
    judged AS (
        SELECT c.id, c.expires_at, cs.daily_cap = 0 OR c.rn + s.n <= cs.daily_cap AS ok
          FROM cand c JOIN sent s USING (msisdn)),
    deferred AS (
        UPDATE mt_messages m
           SET next_attempt_at = v_tomorrow,
               state = CASE WHEN j.expires_at < v_tomorrow THEN 'expired' ELSE 'queued' END,
               final_at = CASE WHEN j.expires_at < v_tomorrow THEN v_now END
          FROM judged j WHERE m.id = j.id AND NOT j.ok
        RETURNING 1)
    SELECT v_ok || ARRAY(SELECT j.id FROM judged j WHERE j.ok) INTO v_ok
      FROM (SELECT count(*) FROM deferred) force_deferred;
    RETURN v_ok;
END $$;

-- As in 004, the batch re-read by id.
CREATE OR REPLACE FUNCTION sg_mt_claim_guarded(p_owner text, p_prio int, p_limit int)
RETURNS TABLE (id bigint, msisdn text, source text, text text, priority smallint,
               fold boolean, link text, ussd_session text, ussd_end boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
BEGIN
    v_ids := ARRAY(SELECT m.id FROM mt_messages m
                    WHERE m.state = 'queued' AND m.priority = p_prio AND m.next_attempt_at <= now()
                    ORDER BY m.next_attempt_at, m.id LIMIT p_limit FOR UPDATE SKIP LOCKED);
    UPDATE mt_messages m SET state = 'expired', final_at = now()
     WHERE m.id = ANY (v_ids) AND m.expires_at < now();
    v_ids := sg_bulk_guard(ARRAY(SELECT m.id FROM mt_messages m
                                  WHERE m.id = ANY (v_ids) AND coalesce(m.state, '') = 'queued'));
    RETURN QUERY
    UPDATE mt_messages m SET state = 'submitting', owner = p_owner, attempts = m.attempts + 1
     WHERE m.id = ANY (v_ids)
    RETURNING m.id, m.msisdn, m.source, m.text, m.priority, m.fold, m.link, m.ussd_session,
              m.ussd_end;
END $$;
