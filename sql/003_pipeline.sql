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

-- Commits a batch of inbound SMS and returns, per input row (idx 1..n, in
-- that order), its id and status ('new', 'duplicate', 'looping') and the
-- subscriber snapshot (NULL for duplicates). Set-based, with the semantics of
-- taking the rows one by one in idx order:
--   * duplicate: same link and smsc_id (non-empty) as a stored row or an
--     earlier row of the batch that was stored, or (p_dedupe_secs > 0) same
--     msisdn and text as one stored within p_dedupe_secs or earlier in the
--     batch; not stored, mo_id is the original's, is_new false;
--   * looping: stored (state 'looping') when p_loop_max or more rows of the
--     same msisdn and text were stored within p_loop_secs, rows stored earlier
--     in the batch included;
--   * the subscriber is upserted for every stored row; is_new is true on the
--     first stored row of a number that did not exist.
CREATE FUNCTION sg_mo_ingest(p_link text[], p_smsc_id text[], p_msisdn text[], p_dest text[],
                             p_text text[], p_partial boolean[], p_dedupe_secs int,
                             p_loop_max int, p_loop_secs int)
RETURNS TABLE (idx int, mo_id bigint, status text, is_new boolean, language text,
               opted_out boolean, flow_state text, flow_state_at bigint, help_at bigint,
               household text, hh_covered boolean, hh_members int, hh_skills int,
               self_levels text, best_quiz text, passed text)
LANGUAGE plpgsql AS $$
DECLARE
    a_id bigint[];
    a_status text[];
    a_new boolean[];
    a_num text[];
BEGIN
    IF coalesce(cardinality(p_msisdn), 0) = 0 THEN
        RETURN;
    END IF;
    WITH RECURSIVE
    inp AS (
        SELECT t.idx::int AS idx, t.link, t.smsc_id, t.msisdn, t.dest, t.text, t.partial,
               CASE WHEN t.smsc_id <> '' THEN length(t.link) || ':' || t.link || t.smsc_id END AS k1,
               CASE WHEN p_dedupe_secs > 0 THEN length(t.msisdn) || ':' || t.msisdn || t.text END AS k2
          FROM unnest(p_link, p_smsc_id, p_msisdn, p_dest, p_text, p_partial)
               WITH ORDINALITY AS t(link, smsc_id, msisdn, dest, text, partial, idx)),
    pre AS MATERIALIZED (
        SELECT i.*,
               CASE WHEN i.smsc_id <> '' THEN
                   (SELECT m.id FROM mo_messages m
                     WHERE m.link = i.link AND m.smsc_id = i.smsc_id AND m.smsc_id <> ''
                     LIMIT 1) END AS s_db,
               CASE WHEN p_dedupe_secs > 0 THEN
                   (SELECT m.id FROM mo_messages m
                     WHERE m.msisdn = i.msisdn AND m.text = i.text
                       AND m.received_at > clock_timestamp() - make_interval(secs => p_dedupe_secs)
                     ORDER BY m.id DESC LIMIT 1) END AS t_db,
               (SELECT count(*) FROM mo_messages m
                 WHERE m.msisdn = i.msisdn AND m.text = i.text
                   AND m.received_at > clock_timestamp() - make_interval(secs => p_loop_secs))
                   AS n_db,
               (i.k1 IS NOT NULL AND count(*) OVER (PARTITION BY i.k1) > 1)
               OR (i.k2 IS NOT NULL AND count(*) OVER (PARTITION BY i.k2) > 1) AS coll
          FROM inp i),
    -- rows that share a key with another row of the batch: decided one by one
    col AS (
        SELECT row_number() OVER (ORDER BY p.idx) AS rn, p.idx, p.k1, p.k2, p.s_db, p.t_db
          FROM pre p WHERE p.coll),
    seq (rn, idx, dup, ref_id, ref_idx, k1s, k2s, idxs) AS (
        SELECT 0::bigint, 0, false, NULL::bigint, NULL::int, '{}'::text[], '{}'::text[], '{}'::int[]
        UNION ALL
        SELECT c.rn, c.idx, d.dup, d.ref_id, d.ref_idx,
               CASE WHEN d.dup THEN s.k1s ELSE s.k1s || c.k1 END,
               CASE WHEN d.dup THEN s.k2s ELSE s.k2s || c.k2 END,
               CASE WHEN d.dup THEN s.idxs ELSE s.idxs || c.idx END
          FROM seq s JOIN col c ON c.rn = s.rn + 1
         CROSS JOIN LATERAL (
               SELECT CASE WHEN c.s_db IS NOT NULL THEN c.s_db
                           WHEN b1.pos IS NOT NULL OR b2.pos IS NOT NULL THEN NULL
                           ELSE c.t_db END AS ref_id,
                      CASE WHEN c.s_db IS NOT NULL THEN NULL
                           ELSE s.idxs[coalesce(b1.pos, b2.pos)] END AS ref_idx,
                      c.s_db IS NOT NULL OR b1.pos IS NOT NULL OR b2.pos IS NOT NULL
                          OR c.t_db IS NOT NULL AS dup
                 FROM (SELECT CASE WHEN c.k1 IS NOT NULL THEN array_position(s.k1s, c.k1) END
                              AS pos) b1,
                      (SELECT CASE WHEN c.k2 IS NOT NULL THEN array_position(s.k2s, c.k2) END
                              AS pos) b2) d),
    dec AS (
        SELECT p.*, coalesce(q.dup, p.s_db IS NOT NULL OR p.t_db IS NOT NULL) AS dup,
               CASE WHEN q.idx IS NULL THEN coalesce(p.s_db, p.t_db) ELSE q.ref_id END AS ref_id,
               q.ref_idx
          FROM pre p LEFT JOIN seq q ON q.idx = p.idx AND q.rn > 0),
    ins_src AS MATERIALIZED (
        SELECT w.*, nextval('mo_messages_id_seq'::regclass) AS id
          FROM (SELECT d.idx, d.link, d.smsc_id, d.msisdn, d.dest, d.text, d.partial,
                       d.n_db + row_number() OVER (PARTITION BY d.msisdn, d.text ORDER BY d.idx)
                           - 1 AS n_loop,
                       row_number() OVER (PARTITION BY d.msisdn ORDER BY d.idx) = 1 AS first_of_num
                  FROM dec d WHERE NOT d.dup ORDER BY d.idx) w),
    ins AS (
        INSERT INTO mo_messages (id, link, smsc_id, msisdn, dest, text, partial, state, received_at)
        SELECT i.id, i.link, i.smsc_id, i.msisdn, i.dest, i.text, i.partial,
               CASE WHEN i.n_loop >= p_loop_max THEN 'looping' ELSE 'received' END,
               clock_timestamp()
          FROM ins_src i ORDER BY i.id),
    sub AS (
        INSERT INTO subscribers AS s (msisdn, last_mo_at)
        SELECT DISTINCT i.msisdn, now() FROM ins_src i ORDER BY 1
        ON CONFLICT (msisdn) DO UPDATE SET last_mo_at = now()
        RETURNING s.msisdn, (s.xmax = 0) AS is_new)
    SELECT array_agg(CASE WHEN d.dup THEN coalesce(d.ref_id, r.id) ELSE i.id END ORDER BY d.idx),
           array_agg(CASE WHEN d.dup THEN 'duplicate'
                          WHEN i.n_loop >= p_loop_max THEN 'looping' ELSE 'new' END ORDER BY d.idx),
           array_agg(coalesce(NOT d.dup AND i.first_of_num AND u.is_new, false) ORDER BY d.idx),
           array_agg(CASE WHEN NOT d.dup THEN d.msisdn END ORDER BY d.idx)
      INTO a_id, a_status, a_new, a_num
      FROM dec d
      LEFT JOIN ins_src i ON i.idx = d.idx
      LEFT JOIN ins_src r ON r.idx = d.ref_idx
      LEFT JOIN sub u ON u.msisdn = d.msisdn AND NOT d.dup;

    RETURN QUERY
    SELECT s.idx, a_id[s.idx], a_status[s.idx], a_new[s.idx], s.language, s.opted_out,
           s.flow_state, s.flow_state_at, s.help_at, s.household, s.hh_covered, s.hh_members,
           s.hh_skills, s.self_levels, s.best_quiz, s.passed
      FROM sg_sub_snapshots(a_num) s ORDER BY s.idx;
END $$;

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

-- Applies what the flow engine decided for a batch of MOs, in one
-- transaction, and returns the replies to send (already 'submitting' for
-- p_owner), in input order: an element's replies, then its join reply, with
-- increasing mt ids. Input: a JSON array of
--   {"mo":id, "msisdn":"84..", "src":"sms", "dest":"8079", "state":"..",
--    "sc":bool, "lang":"en"|"", "opt":-1|0|1, "help":bool, "join":"CODE"|"",
--    "rok":"..", "runk":"..", "replies":[".."], "ev":[[skill,"self"|"quiz",value,passed]],
--    "ussd":"session key"|null, "end":bool, "link":".."}
-- Set-based. The pipeline sends at most one element per number; if a number
-- appears more than once the result is that of applying the elements in
-- order: the last changed flow state / language / opt-in-out / join wins, an
-- opt-out anywhere stamps opted_out_at and cancels queued bulk MTs, events
-- apply in order (last self level, best quiz, first pass, any failure).
-- Events naming an unknown skill position are ignored.
CREATE FUNCTION sg_mo_apply(p jsonb, p_rule text, p_owner text)
RETURNS TABLE (mt_id bigint, msisdn text, text text, mo_id bigint, link text,
               ussd_session text, ussd_end boolean)
LANGUAGE plpgsql AS $$
BEGIN
    IF p IS NULL OR jsonb_typeof(p) <> 'array' OR jsonb_array_length(p) = 0 THEN
        RETURN;
    END IF;

    -- proficiency: history (append, in order), then one upsert per (number, skill)
    WITH e AS (
        SELECT x.ord, x.e->>'msisdn' AS msisdn, x.e->>'src' AS src, x.e->'ev' AS ev
          FROM jsonb_array_elements(p) WITH ORDINALITY AS x(e, ord)
         WHERE jsonb_typeof(x.e->'ev') = 'array'),
    v AS MATERIALIZED (
        SELECT e.ord, y.eord, e.msisdn, e.src, k.code AS skill, y.ev->>1 AS kind,
               (y.ev->>2)::int AS value,
               CASE WHEN y.ev->>1 = 'quiz' THEN (y.ev->>3)::boolean END AS passed
          FROM e CROSS JOIN LATERAL jsonb_array_elements(e.ev) WITH ORDINALITY AS y(ev, eord)
          JOIN skills k ON k.position = (y.ev->>0)::int),
    hist AS (
        INSERT INTO proficiency_events (msisdn, skill, kind, value, passed, source)
        SELECT v.msisdn, v.skill, v.kind, v.value, v.passed, v.src FROM v ORDER BY v.ord, v.eord),
    a AS (
        SELECT v.msisdn, v.skill,
               (array_agg(v.value ORDER BY v.ord DESC, v.eord DESC)
                    FILTER (WHERE v.kind = 'self'))[1] AS self_level,
               (array_agg(v.src ORDER BY v.ord DESC, v.eord DESC)
                    FILTER (WHERE v.kind = 'self'))[1] AS self_src,
               max(v.value) FILTER (WHERE v.kind = 'quiz') AS best_quiz,
               (array_agg(v.src ORDER BY v.ord DESC, v.eord DESC)
                    FILTER (WHERE v.kind = 'quiz'))[1] AS quiz_src,
               coalesce(bool_or(v.passed) FILTER (WHERE v.kind = 'quiz'), false) AS any_pass,
               coalesce(bool_or(NOT v.passed) FILTER (WHERE v.kind = 'quiz'), false) AS any_fail
          FROM v GROUP BY v.msisdn, v.skill)
    INSERT INTO proficiency AS q (msisdn, skill, self_level, self_at, self_source, best_quiz,
                                  quiz_passed_at, quiz_failed_at, quiz_source, updated_at,
                                  proficient)
    SELECT a.msisdn, a.skill, a.self_level,
           CASE WHEN a.self_src IS NOT NULL THEN now() END, a.self_src, a.best_quiz,
           CASE WHEN a.any_pass THEN now() END, CASE WHEN a.any_fail THEN now() END,
           a.quiz_src, now(),
           sg_is_proficient(a.self_level::smallint, CASE WHEN a.any_pass THEN now() END, p_rule)
      FROM a ORDER BY a.msisdn, a.skill
    ON CONFLICT ON CONSTRAINT proficiency_pkey DO UPDATE SET
        self_level = CASE WHEN excluded.self_source IS NOT NULL THEN excluded.self_level
                          ELSE q.self_level END,
        self_at = coalesce(excluded.self_at, q.self_at),
        self_source = coalesce(excluded.self_source, q.self_source),
        best_quiz = CASE WHEN excluded.quiz_source IS NOT NULL
                         THEN greatest(q.best_quiz, excluded.best_quiz) ELSE q.best_quiz END,
        quiz_passed_at = coalesce(q.quiz_passed_at, excluded.quiz_passed_at),
        quiz_failed_at = coalesce(excluded.quiz_failed_at, q.quiz_failed_at),
        quiz_source = coalesce(excluded.quiz_source, q.quiz_source),
        updated_at = now(),
        proficient = sg_is_proficient(
            CASE WHEN excluded.self_source IS NOT NULL THEN excluded.self_level
                 ELSE q.self_level END,
            coalesce(q.quiz_passed_at, excluded.quiz_passed_at), p_rule);

    -- subscribers: flow state, language, opt-out/in, help, household join
    WITH e AS (
        SELECT x.ord, x.e->>'msisdn' AS msisdn, x.e->>'src' AS src, x.e->>'state' AS state,
               coalesce((x.e->>'sc')::boolean, false) AS sc,
               coalesce(x.e->>'lang', '') AS lang, coalesce((x.e->>'opt')::int, 0) AS opt,
               coalesce((x.e->>'help')::boolean, false) AS help, h.id AS hh
          FROM jsonb_array_elements(p) WITH ORDINALITY AS x(e, ord)
          LEFT JOIN households h ON h.code = x.e->>'join' AND x.e->>'join' <> ''),
    a AS (
        SELECT e.msisdn,
               bool_or(e.sc) AS sc,
               (array_agg(e.state ORDER BY e.ord DESC) FILTER (WHERE e.sc))[1] AS state,
               (array_agg(e.lang ORDER BY e.ord DESC) FILTER (WHERE e.lang <> ''))[1] AS lang,
               (array_agg(e.opt ORDER BY e.ord DESC) FILTER (WHERE e.opt IN (-1, 1)))[1] AS opt,
               bool_or(e.opt = -1) AS opted_out,
               bool_or(e.help) AS help,
               (array_agg(e.hh ORDER BY e.ord DESC) FILTER (WHERE e.hh IS NOT NULL))[1] AS hh,
               (array_agg(e.src ORDER BY e.ord DESC) FILTER (WHERE e.hh IS NOT NULL))[1] AS hh_src
          FROM e GROUP BY e.msisdn)
    UPDATE subscribers s SET
        flow_state = CASE WHEN a.sc THEN a.state ELSE s.flow_state END,
        flow_state_at = CASE WHEN a.sc THEN now() ELSE s.flow_state_at END,
        language = coalesce(a.lang, s.language),
        opted_out = CASE a.opt WHEN -1 THEN true WHEN 1 THEN false ELSE s.opted_out END,
        opted_out_at = CASE WHEN a.opted_out THEN now() ELSE s.opted_out_at END,
        help_at = CASE WHEN a.help THEN now() ELSE s.help_at END,
        household_id = coalesce(a.hh, s.household_id),
        joined_via = CASE WHEN a.hh IS NOT NULL THEN a.hh_src ELSE s.joined_via END
      FROM (SELECT * FROM a WHERE a.sc OR a.lang IS NOT NULL OR a.opt IS NOT NULL OR a.help
                                  OR a.hh IS NOT NULL
             ORDER BY a.msisdn) a
     WHERE s.msisdn = a.msisdn;

    -- an opt-out cancels the number's queued bulk messages
    UPDATE mt_messages m SET state = 'cancelled', final_at = now()
     WHERE m.msisdn IN (SELECT x.e->>'msisdn' FROM jsonb_array_elements(p) AS x(e)
                         WHERE (x.e->>'opt')::int = -1)
       AND m.state = 'queued' AND m.priority > 0;

    UPDATE mo_messages m SET state = 'processed', processed_at = now()
     WHERE m.id IN (SELECT (x.e->>'mo')::bigint FROM jsonb_array_elements(p) AS x(e));

    -- the replies, in input order, ids increasing in that order
    RETURN QUERY
    WITH e AS (
        SELECT x.ord, (x.e->>'mo')::bigint AS mo, x.e->>'msisdn' AS msisdn,
               coalesce(x.e->>'dest', '') AS dest, x.e->'replies' AS replies,
               coalesce(x.e->>'join', '') AS join_code, x.e->>'rok' AS rok, x.e->>'runk' AS runk,
               coalesce(x.e->>'link', '') AS link, x.e->>'ussd' AS ussd,
               coalesce((x.e->>'end')::boolean, false) AS ussd_end
          FROM jsonb_array_elements(p) WITH ORDINALITY AS x(e, ord)),
    r AS (
        SELECT e.ord, y.rord, y.t AS text
          FROM e CROSS JOIN LATERAL jsonb_array_elements_text(
                   CASE WHEN jsonb_typeof(e.replies) = 'array' THEN e.replies ELSE '[]' END)
               WITH ORDINALITY AS y(t, rord)
        UNION ALL
        SELECT e.ord, 1000000, CASE WHEN EXISTS (SELECT 1 FROM households h WHERE h.code = e.join_code)
                                    THEN e.rok ELSE e.runk END
          FROM e WHERE e.join_code <> ''),
    o AS MATERIALIZED (
        SELECT nextval('mt_messages_id_seq'::regclass) AS id, z.*
          FROM (SELECT e.*, r.text AS reply FROM r JOIN e ON e.ord = r.ord
                 ORDER BY r.ord, r.rord) z),
    ins AS (
        INSERT INTO mt_messages (id, msisdn, source, text, kind, priority, state, owner, mo_id,
                                 link, ussd_session, ussd_end, attempts)
        SELECT o.id, o.msisdn, o.dest, o.reply,
               CASE WHEN o.ussd IS NULL THEN 'reply' ELSE 'ussd' END, 0, 'submitting', p_owner,
               o.mo, o.link, o.ussd, o.ussd_end, 1
          FROM o ORDER BY o.id)
    SELECT o.id, o.msisdn, o.reply, o.mo, o.link, o.ussd, o.ussd_end FROM o ORDER BY o.id;
END $$;

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
