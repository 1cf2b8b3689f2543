-- 023_campaign_msisdn.sql — only campaign messages are indexed by number.
--
-- mt_messages_msisdn (001) indexed every outbound message by (msisdn,
-- created_at). Its one reader is the daily cap (sg_bulk_guard): how many
-- broadcast and reminder messages a number has been sent today. Every quiz
-- reply paid for it twice, once on insert and once more on its update to
-- 'delivered' (not HOT: state is in the outbox's partial indexes), 3.7 of the
-- about 13 index entries PostgreSQL writes per MO, where index insertions
-- are 22 % of its CPU. The index now holds the campaign messages alone.
--
-- A session before tried this and took it back: with statistics that had
-- not seen a new broadcast yet, the planner read sg_bulk_guard's batch
-- ("id = ANY (batch) AND kind IN ('broadcast', 'reminder')") through the
-- new partial index, whose predicate that condition implies: every queued
-- campaign message scanned per claim, and the bench's first 200,000-message
-- broadcast after the MO runs took 201 s instead of 13. Here, as 015 did
-- for mt_messages_due, the batch tests coalesce(kind, ''), which is not the
-- index's predicate, so the batch is found by primary key whatever the
-- statistics say; the daily cap's count still reads the new index.
--
-- The index is built inside the migration's transaction, which blocks
-- writes to mt_messages for one scan of the table; on a big outbox, build it
-- first by hand with CREATE INDEX CONCURRENTLY (same name and definition:
-- IF NOT EXISTS then skips it; one left invalid by a failed concurrent build
-- is dropped and built here).

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                WHERE c.relname = 'mt_messages_campaign_msisdn' AND pg_table_is_visible(c.oid)
                  AND NOT i.indisvalid) THEN
        DROP INDEX mt_messages_campaign_msisdn;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS mt_messages_campaign_msisdn ON mt_messages (msisdn, created_at)
    WHERE kind IN ('broadcast', 'reminder');
DROP INDEX IF EXISTS mt_messages_msisdn;

-- As in 015, with the batch's campaign messages picked by coalesce(kind, '').
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
                     WHERE m.id = ANY (p_ids)
                       AND coalesce(m.kind, '') IN ('broadcast', 'reminder')
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
