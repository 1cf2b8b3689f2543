-- 024_snapshot_proficiency.sql — a number's proficiency read in one index probe, without sorts.
--
-- sg_sub_snapshots (016) read a number's proficiency as skills LEFT JOIN
-- proficiency, folded by three string_agg(... ORDER BY position): per number,
-- a scan of the skills (five rows) joined to the number's proficiency rows,
-- and three sorts set up and run (an aggregate's ORDER BY sorts each group).
-- Replaying a bench's MO batches (tests/bench/sqlreplay.sh) put the function
-- at about 22 us of PostgreSQL's 214 us of CPU per MO.
-- Now the number's rows are read by one range scan of proficiency_pkey, each
-- joined to its skill, and folded skill by skill by plain aggregates (no
-- sort); a number without rows (most of them) costs that one probe. Same
-- columns, same strings. In the replay: 219 -> 207 us of CPU per MO.

CREATE OR REPLACE FUNCTION sg_sub_snapshots(p_msisdn text[])
RETURNS TABLE (idx int, msisdn text, language text, opted_out boolean, flow_state text,
               flow_state_at bigint, help_at bigint, household text, hh_covered boolean,
               hh_members int, hh_skills int, self_levels text, best_quiz text, passed text)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH u AS MATERIALIZED (
            SELECT u.idx::int AS idx, s.msisdn, s.language, s.opted_out, s.flow_state,
                   s.flow_state_at, s.help_at, s.household_id
              FROM unnest(p_msisdn) WITH ORDINALITY AS u(msisdn, idx)
              LEFT JOIN subscribers s ON s.msisdn = u.msisdn),
        hh AS (
            SELECT m.household_id, count(*)::int AS members,
                   coalesce(bool_or(pc.n = 5), false) AS covered,
                   coalesce(bit_or(pc.mask), 0) AS mask
              FROM subscribers m
              CROSS JOIN LATERAL (
                   SELECT count(*) FILTER (WHERE p.proficient) AS n,
                          bit_or(1 << (k.position - 1)) FILTER (WHERE p.proficient) AS mask
                     FROM proficiency p JOIN skills k ON k.code = p.skill
                    WHERE p.msisdn = m.msisdn) pc
             WHERE m.household_id IN (SELECT u.household_id FROM u WHERE u.household_id IS NOT NULL)
             GROUP BY m.household_id)
        SELECT u.idx, u.msisdn, u.language, u.opted_out, u.flow_state,
               CASE WHEN u.msisdn IS NOT NULL THEN coalesce(extract(epoch FROM u.flow_state_at)::bigint, 0) END,
               CASE WHEN u.msisdn IS NOT NULL THEN coalesce(extract(epoch FROM u.help_at)::bigint, 0) END,
               CASE WHEN u.msisdn IS NOT NULL THEN coalesce(h.code, '') END,
               CASE WHEN u.msisdn IS NOT NULL THEN coalesce(hh.covered, false) END,
               CASE WHEN u.msisdn IS NOT NULL THEN coalesce(hh.members, 0) END,
               CASE WHEN u.msisdn IS NOT NULL THEN coalesce(hh.mask, 0) END,
               CASE WHEN u.msisdn IS NOT NULL THEN pr.self_levels END,
               CASE WHEN u.msisdn IS NOT NULL THEN pr.best_quiz END,
               CASE WHEN u.msisdn IS NOT NULL THEN pr.passed END
          FROM u
          LEFT JOIN households h ON h.id = u.household_id
          LEFT JOIN hh ON hh.household_id = u.household_id
          CROSS JOIN LATERAL (
               -- skill positions are 1..5 (skills.position); a skill without a row: -1, -1, 0
               SELECT concat_ws(',',
                          coalesce(max(p.self_level) FILTER (WHERE k.position = 1), -1),
                          coalesce(max(p.self_level) FILTER (WHERE k.position = 2), -1),
                          coalesce(max(p.self_level) FILTER (WHERE k.position = 3), -1),
                          coalesce(max(p.self_level) FILTER (WHERE k.position = 4), -1),
                          coalesce(max(p.self_level) FILTER (WHERE k.position = 5), -1))
                          AS self_levels,
                      concat_ws(',',
                          coalesce(max(p.best_quiz) FILTER (WHERE k.position = 1), -1),
                          coalesce(max(p.best_quiz) FILTER (WHERE k.position = 2), -1),
                          coalesce(max(p.best_quiz) FILTER (WHERE k.position = 3), -1),
                          coalesce(max(p.best_quiz) FILTER (WHERE k.position = 4), -1),
                          coalesce(max(p.best_quiz) FILTER (WHERE k.position = 5), -1))
                          AS best_quiz,
                      concat_ws(',',
                          count(p.quiz_passed_at) FILTER (WHERE k.position = 1),
                          count(p.quiz_passed_at) FILTER (WHERE k.position = 2),
                          count(p.quiz_passed_at) FILTER (WHERE k.position = 3),
                          count(p.quiz_passed_at) FILTER (WHERE k.position = 4),
                          count(p.quiz_passed_at) FILTER (WHERE k.position = 5))
                          AS passed
                 FROM proficiency p JOIN skills k ON k.code = p.skill
                WHERE p.msisdn = u.msisdn AND u.msisdn IS NOT NULL) pr
         ORDER BY u.idx;
END $$;
