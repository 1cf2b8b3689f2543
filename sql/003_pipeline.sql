-- The message pipeline's statements, as functions so that one round trip
-- commits a whole batch (group commit). Called by core/pipeline.c.

-- Is a subscriber proficient in a skill under a rule ('self', 'quiz', 'both')?
CREATE FUNCTION sg_is_proficient(p_self smallint, p_passed timestamptz, p_rule text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_rule
        WHEN 'self' THEN coalesce(p_self >= 2, false)
        WHEN 'quiz' THEN p_passed IS NOT NULL
        ELSE coalesce(p_self >= 2, false) AND p_passed IS NOT NULL
    END
$$;

-- Recomputes the stored proficient flags (after a change of the rule).
CREATE FUNCTION sg_recompute_proficiency(p_rule text) RETURNS bigint LANGUAGE sql AS $$
    WITH u AS (
        UPDATE proficiency SET proficient = sg_is_proficient(self_level, quiz_passed_at, p_rule)
        WHERE proficient IS DISTINCT FROM sg_is_proficient(self_level, quiz_passed_at, p_rule)
        RETURNING 1)
    SELECT count(*) FROM u
$$;

-- Everything the flow engine needs to know about a set of subscribers: one
-- row per element of p_msisdn (idx 1..n, in that order; all NULL but idx
-- for a NULL element or an unknown number), in one set-based query: the
-- household aggregates (members, some member proficient in all five skills,
-- mask of the skills some member is proficient in) and the per-skill lists in
-- skills.position order. Callers zip their own arrays by idx (no join).
CREATE FUNCTION sg_sub_snapshots(p_msisdn text[])
RETURNS TABLE (idx int, msisdn text, language text, opted_out boolean, flow_state text,
               flow_state_at bigint, help_at bigint, household text, hh_covered boolean,
               hh_members int, hh_skills int, self_levels text, best_quiz text, passed text)
LANGUAGE sql STABLE AS $$
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
           pr.self_levels, pr.best_quiz, pr.passed
      FROM u
      LEFT JOIN households h ON h.id = u.household_id
      LEFT JOIN hh ON hh.household_id = u.household_id
      CROSS JOIN LATERAL (
           SELECT string_agg(coalesce(p.self_level, -1)::text, ',' ORDER BY k.position)
                      AS self_levels,
                  string_agg(coalesce(p.best_quiz, -1)::text, ',' ORDER BY k.position)
                      AS best_quiz,
                  string_agg(CASE WHEN p.quiz_passed_at IS NULL THEN '0' ELSE '1' END, ','
                             ORDER BY k.position) AS passed
             FROM skills k
             LEFT JOIN proficiency p ON p.msisdn = u.msisdn AND p.skill = k.code
            WHERE u.msisdn IS NOT NULL) pr
     ORDER BY u.idx
$$;

-- Everything the flow engine needs to know about one subscriber (no row when
-- the number is unknown). plpgsql so that its plan is cached per session.
CREATE FUNCTION sg_sub_snapshot(p_msisdn text,
    OUT language text, OUT opted_out boolean, OUT flow_state text, OUT flow_state_at bigint,
    OUT help_at bigint, OUT household text, OUT hh_covered boolean, OUT hh_members int,
    OUT hh_skills int, OUT self_levels text, OUT best_quiz text, OUT passed text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT s.language, s.opted_out, s.flow_state, s.flow_state_at, s.help_at, s.household,
           s.hh_covered, s.hh_members, s.hh_skills, s.self_levels, s.best_quiz, s.passed
      INTO language, opted_out, flow_state, flow_state_at, help_at, household,
           hh_covered, hh_members, hh_skills, self_levels, best_quiz, passed
      FROM sg_sub_snapshots(ARRAY[p_msisdn]) s;
END $$;

-- (sg_mo_ingest, the first half of the MO path until 010_mo_commit.sql, is
-- gone: sg_mo_prepare and sg_mo_commit replace it.)

-- Snapshot of MOs committed but never processed (after a crash), at least
-- p_min_age seconds old (periodic sweeps leave younger ones to their owner).
CREATE FUNCTION sg_mo_pending(p_limit int, p_min_age int)
RETURNS TABLE (mo_id bigint, link text, msisdn text, dest text, text text, partial boolean,
               language text, opted_out boolean, flow_state text, flow_state_at bigint,
               help_at bigint, household text, hh_covered boolean, hh_members int,
               hh_skills int, self_levels text, best_quiz text, passed text)
LANGUAGE sql STABLE AS $$
    WITH m AS MATERIALIZED (
        SELECT m.id, m.link, m.msisdn, m.dest, m.text, m.partial,
               row_number() OVER (ORDER BY m.id)::int AS rn
          FROM (SELECT m.* FROM mo_messages m
                 WHERE m.state = 'received'
                   AND m.received_at <= clock_timestamp() - make_interval(secs => p_min_age)
                   AND EXISTS (SELECT 1 FROM subscribers s WHERE s.msisdn = m.msisdn)
                 ORDER BY m.id LIMIT p_limit) m)
    SELECT m.id, m.link, m.msisdn, m.dest, m.text, m.partial,
           s.language, s.opted_out, s.flow_state, s.flow_state_at, s.help_at, s.household,
           s.hh_covered, s.hh_members, s.hh_skills, s.self_levels, s.best_quiz, s.passed
      FROM m JOIN sg_sub_snapshots(ARRAY(SELECT m.msisdn FROM m ORDER BY m.rn)) s ON s.idx = m.rn
     ORDER BY m.id
$$;

-- sg_mo_apply: see 010_mo_commit.sql.

-- Claims due queued MTs for p_owner (several instances: SKIP LOCKED).
-- Bulk traffic (priority > 0) goes through sg_mt_claim_guarded
-- (004_campaigns.sql): opt-outs, quiet hours and the daily cap are checked
-- again at send time. Expired rows are only looked at when claimed, so a
-- large backlog costs one index range per claim.
CREATE FUNCTION sg_mt_claim(p_owner text, p_prio int, p_limit int)
RETURNS TABLE (id bigint, msisdn text, source text, text text, priority smallint,
               fold boolean, link text, ussd_session text, ussd_end boolean)
LANGUAGE plpgsql AS $$
BEGIN
    IF p_prio > 0 THEN
        RETURN QUERY SELECT * FROM sg_mt_claim_guarded(p_owner, p_prio, p_limit);
        RETURN;
    END IF;
    RETURN QUERY
    WITH c AS (
        SELECT m.id FROM mt_messages m
         WHERE m.state = 'queued' AND m.priority = p_prio AND m.next_attempt_at <= now()
         ORDER BY m.next_attempt_at, m.id LIMIT p_limit FOR UPDATE SKIP LOCKED),
    u AS (
        UPDATE mt_messages m
           SET state = CASE WHEN m.expires_at < now() THEN 'expired' ELSE 'submitting' END,
               final_at = CASE WHEN m.expires_at < now() THEN now() END,
               owner = p_owner, attempts = m.attempts + 1
          FROM c WHERE m.id = c.id
        RETURNING m.*)
    SELECT u.id, u.msisdn, u.source, u.text, u.priority, u.fold, u.link, u.ussd_session, u.ussd_end
      FROM u WHERE u.state = 'submitting';
END $$;

-- sg_mt_results and sg_dlr_apply: see 009_receipts.sql (defined there since
-- they stopped serialising on an advisory lock).

-- After a crash: what this instance had in flight is sent again, marked.
CREATE FUNCTION sg_mt_recover(p_owner text) RETURNS bigint LANGUAGE sql AS $$
    WITH u AS (
        UPDATE mt_messages SET state = 'queued', maybe_duplicate = true
         WHERE state = 'submitting' AND owner = p_owner
        RETURNING 1)
    SELECT count(*) FROM u
$$;
