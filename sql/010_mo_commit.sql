-- One transaction per batch of inbound SMS (issue 10).
--
-- Until this migration an MO batch cost two transactions: sg_mo_ingest
-- committed the rows (then the deliver_sm_resp went out), the flow engine ran,
-- and sg_mo_apply committed the outcome and the replies, updating every MO
-- row a second time to 'processed'. Now the pipeline reads what it needs
-- first (sg_mo_prepare: duplicates, loop guard, subscriber snapshots; no
-- write), runs the flow engine, and commits the MO rows, their outcome and
-- their replies together (sg_mo_commit); the deliver_sm_resp and the replies
-- leave after that one commit. One fsync and one MO row version fewer per
-- batch, and a crash can no longer leave an acknowledged MO unprocessed.
--
-- The pipeline never puts two MOs of one number in the same batch (it holds
-- a number's later MOs until the earlier one is done), so dedupe against the
-- database is enough for the number-and-text rule; two rows of a batch with
-- the same SMSC id are told apart here all the same.

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
CREATE OR REPLACE FUNCTION sg_mo_apply(p jsonb, p_rule text, p_owner text)
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

    -- (rows sg_mo_commit has just inserted as 'processed' are marked "fresh")
    UPDATE mo_messages m SET state = 'processed', processed_at = now()
     WHERE m.id IN (SELECT (x.e->>'mo')::bigint FROM jsonb_array_elements(p) AS x(e)
                     WHERE NOT coalesce((x.e->>'fresh')::boolean, false));

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


DROP FUNCTION IF EXISTS sg_mo_ingest(text[], text[], text[], text[], text[], boolean[], int, int, int);

-- What the pipeline needs to decide a batch of inbound SMS, read-only: per
-- input row (idx 1..n, in that order) its status and, for a duplicate, the
-- stored original's id:
--   * duplicate: the same link and SMSC id (non-empty) as a stored row or an
--     earlier row of the batch, or (p_dedupe_secs > 0) the same number and
--     text as a row stored within p_dedupe_secs;
--   * looping: p_loop_max or more rows of the same number and text stored
--     within p_loop_secs (stored, not answered);
--   * new: everything else.
-- Also whether the number is unknown and, for new rows, the subscriber
-- snapshot (the defaults of a new subscriber for an unknown number).
-- dup_of is NULL when the original is an earlier row of the batch.
CREATE FUNCTION sg_mo_prepare(p_link text[], p_smsc_id text[], p_msisdn text[], p_text text[],
                              p_dedupe_secs int, p_loop_max int, p_loop_secs int)
RETURNS TABLE (idx int, dup_of bigint, status text, is_new boolean, language text,
               opted_out boolean, flow_state text, flow_state_at bigint, help_at bigint,
               household text, hh_covered boolean, hh_members int, hh_skills int,
               self_levels text, best_quiz text, passed text)
LANGUAGE sql STABLE AS $$
    WITH inp AS (
        SELECT t.idx::int AS idx, t.link, t.smsc_id, t.msisdn, t.text
          FROM unnest(p_link, p_smsc_id, p_msisdn, p_text) WITH ORDINALITY
               AS t(link, smsc_id, msisdn, text, idx)),
    d AS MATERIALIZED (
        SELECT i.idx, i.msisdn,
               coalesce(
                   CASE WHEN i.smsc_id <> '' THEN
                       (SELECT m.id FROM mo_messages m
                         WHERE m.link = i.link AND m.smsc_id = i.smsc_id LIMIT 1) END,
                   CASE WHEN p_dedupe_secs > 0 THEN
                       (SELECT m.id FROM mo_messages m
                         WHERE m.msisdn = i.msisdn AND m.text = i.text
                           AND m.received_at > clock_timestamp() - make_interval(secs => p_dedupe_secs)
                         ORDER BY m.id DESC LIMIT 1) END) AS dup_of,
               i.smsc_id <> '' AND row_number() OVER (PARTITION BY i.link, i.smsc_id ORDER BY i.idx) > 1
                   AS dup_in_batch,
               (SELECT count(*) FROM mo_messages m
                 WHERE m.msisdn = i.msisdn AND m.text = i.text
                   AND m.received_at > clock_timestamp() - make_interval(secs => p_loop_secs))
                   AS n_db,
               NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.msisdn = i.msisdn) AS is_new
          FROM inp i),
    st AS MATERIALIZED (
        SELECT d.*, CASE WHEN d.dup_of IS NOT NULL OR d.dup_in_batch THEN 'duplicate'
                         WHEN d.n_db >= p_loop_max THEN 'looping' ELSE 'new' END AS status
          FROM d)
    SELECT st.idx, st.dup_of, st.status, st.is_new,
           coalesce(s.language, 'vi'), coalesce(s.opted_out, false), coalesce(s.flow_state, ''),
           coalesce(s.flow_state_at, 0), coalesce(s.help_at, 0), coalesce(s.household, ''),
           coalesce(s.hh_covered, false), coalesce(s.hh_members, 0), coalesce(s.hh_skills, 0),
           s.self_levels, s.best_quiz, s.passed
      FROM st
      JOIN sg_sub_snapshots(ARRAY(SELECT CASE WHEN st.status = 'new' THEN st.msisdn END
                                    FROM st ORDER BY st.idx)) s ON s.idx = st.idx
     ORDER BY st.idx
$$;

-- Commits a batch of inbound SMS with what the flow engine decided for it,
-- in one transaction. p: a JSON array, one element per MO to store:
--   {"in": {"link", "smsc_id", "dest", "text", "partial", "state": "processed"|"looping"},
--    ...the sg_mo_apply fields for a 'processed' MO (without "mo")}
-- Upserts the subscribers, inserts the MO rows (ids increasing in input
-- order), applies the 'processed' ones through sg_mo_apply and returns,
-- first one row per element (kind 'mo': ord, mo_id), then the replies to
-- send (kind 'mt', as sg_mo_apply returns them).
CREATE FUNCTION sg_mo_commit(p jsonb, p_rule text, p_owner text)
RETURNS TABLE (kind text, ord int, mo_id bigint, mt_id bigint, msisdn text, text text,
               link text, ussd_session text, ussd_end boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint[];
    v_apply jsonb;
BEGIN
    IF p IS NULL OR jsonb_typeof(p) <> 'array' OR jsonb_array_length(p) = 0 THEN
        RETURN;
    END IF;
    PERFORM sg_subscribers_seen(p);

    -- the i-th element's MO row gets v_id[i]
    v_id := ARRAY(SELECT nextval('mo_messages_id_seq'::regclass)
                    FROM generate_series(1, jsonb_array_length(p)));
    INSERT INTO mo_messages (id, link, smsc_id, msisdn, dest, text, partial, state,
                             received_at, processed_at)
    SELECT v_id[x.ord], x.e->'in'->>'link', coalesce(x.e->'in'->>'smsc_id', ''), x.e->>'msisdn',
           coalesce(x.e->'in'->>'dest', ''), x.e->'in'->>'text',
           coalesce((x.e->'in'->>'partial')::boolean, false), x.e->'in'->>'state',
           clock_timestamp(), CASE WHEN x.e->'in'->>'state' = 'processed' THEN now() END
      FROM jsonb_array_elements(p) WITH ORDINALITY AS x(e, ord)
     ORDER BY x.ord;

    SELECT jsonb_agg((x.e - 'in') || jsonb_build_object('mo', v_id[x.ord], 'fresh', true)
                     ORDER BY x.ord)
      INTO v_apply
      FROM jsonb_array_elements(p) WITH ORDINALITY AS x(e, ord)
     WHERE x.e->'in'->>'state' = 'processed';

    RETURN QUERY SELECT 'mo'::text, o::int, v_id[o], NULL::bigint, NULL::text, NULL::text,
                        NULL::text, NULL::text, NULL::boolean
                   FROM generate_series(1, cardinality(v_id)) o;
    IF v_apply IS NOT NULL THEN
        RETURN QUERY SELECT 'mt'::text, NULL::int, a.mo_id, a.mt_id, a.msisdn, a.text, a.link,
                            a.ussd_session, a.ussd_end
                       FROM sg_mo_apply(v_apply, p_rule, p_owner) a;
    END IF;
END $$;
