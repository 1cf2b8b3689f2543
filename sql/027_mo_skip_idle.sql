-- 027_mo_skip_idle.sql — a small MO batch runs only the statements it needs.
--
-- A statement's plan is kept for the session, but each execution still starts
-- its executor: every node of the plan initialised, every table it writes
-- opened with all its indexes, its CHECK constraints read again. For the
-- small batches of a lightly loaded link (about 4 MOs at 1,000 MO/s) that
-- start-up is a quarter of PostgreSQL's CPU (perf on the backend replaying a
-- bench's latency runs: standard_ExecutorStart 25 %), paid also by statements
-- with nothing to do: the proficiency writes when no MO of the batch records
-- an event, the cancel of an opted-out number's queued messages when no MO
-- opts out, the MO rows' update when sg_mo_commit has just stored them all
-- as processed, the insert of new numbers when every number is known. Each
-- now runs only when some element of the batch asks for it, tested with a
-- jsonpath on the batch (an expression, no executor). Each test errs towards
-- running: anything but the exact JSON the daemon writes for "nothing to do"
-- ("ev" an empty array, "opt" 0, "fresh" and "known" true) runs the
-- statement, so a batch written by another client is applied as before.

-- As in 017, with the three statements above run only when needed.
CREATE OR REPLACE FUNCTION sg_mo_apply(p jsonb, p_rule text, p_owner text)
RETURNS TABLE (mt_id bigint, msisdn text, text text, mo_id bigint, link text,
               ussd_session text, ussd_end boolean)
LANGUAGE plpgsql AS $$
BEGIN
    IF p IS NULL OR jsonb_typeof(p) <> 'array' OR jsonb_array_length(p) = 0 THEN
        RETURN;
    END IF;

    -- proficiency: history (append, in order), then one upsert per (number, skill)
    IF p @? '$[*] ? (@.ev.type() == "array" && @.ev.size() > 0)' THEN
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
    END IF;

    -- subscribers: flow state, language, opt-out/in, help, household join, and
    -- last_mo_at for elements marked "seen" (sg_mo_commit's processed MOs)
    WITH e AS (
        SELECT x.ord, x.e->>'msisdn' AS msisdn, x.e->>'src' AS src, x.e->>'state' AS state,
               coalesce((x.e->>'sc')::boolean, false) AS sc,
               coalesce(x.e->>'lang', '') AS lang, coalesce((x.e->>'opt')::int, 0) AS opt,
               coalesce((x.e->>'help')::boolean, false) AS help, h.id AS hh,
               coalesce((x.e->>'seen')::boolean, false) AS seen
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
               (array_agg(e.src ORDER BY e.ord DESC) FILTER (WHERE e.hh IS NOT NULL))[1] AS hh_src,
               bool_or(e.seen) AS seen
          FROM e GROUP BY e.msisdn)
    UPDATE subscribers s SET
        flow_state = CASE WHEN a.sc THEN a.state ELSE s.flow_state END,
        flow_state_at = CASE WHEN a.sc THEN now() ELSE s.flow_state_at END,
        language = coalesce(a.lang, s.language),
        opted_out = CASE a.opt WHEN -1 THEN true WHEN 1 THEN false ELSE s.opted_out END,
        opted_out_at = CASE WHEN a.opted_out THEN now() ELSE s.opted_out_at END,
        help_at = CASE WHEN a.help THEN now() ELSE s.help_at END,
        household_id = coalesce(a.hh, s.household_id),
        joined_via = CASE WHEN a.hh IS NOT NULL THEN a.hh_src ELSE s.joined_via END,
        last_mo_at = CASE WHEN a.seen THEN now() ELSE s.last_mo_at END
      FROM (SELECT * FROM a WHERE a.sc OR a.lang IS NOT NULL OR a.opt IS NOT NULL OR a.help
                                  OR a.hh IS NOT NULL OR a.seen
             ORDER BY a.msisdn) a
     WHERE s.msisdn = a.msisdn;

    -- an opt-out cancels the number's queued bulk messages
    IF p @? '$[*] ? (@.opt.type() == "string" || @.opt == -1)' THEN
        UPDATE mt_messages m SET state = 'cancelled', final_at = now()
         WHERE m.msisdn IN (SELECT x.e->>'msisdn' FROM jsonb_array_elements(p) AS x(e)
                             WHERE (x.e->>'opt')::int = -1)
           AND m.state = 'queued' AND m.priority > 0;
    END IF;

    -- (rows sg_mo_commit has just inserted as 'processed' are marked "fresh")
    IF p @? '$[*] ? (!(@.fresh.type() == "boolean" && @.fresh == true))' THEN
        UPDATE mo_messages m SET state = 'processed', processed_at = now()
         WHERE m.id IN (SELECT (x.e->>'mo')::bigint FROM jsonb_array_elements(p) AS x(e)
                         WHERE NOT coalesce((x.e->>'fresh')::boolean, false));
    END IF;

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
        -- each reply carries its element's columns (no join back to e: a
        -- batch joined to itself is the one join here that must not be a
        -- nested loop)
        SELECT e.ord, e.mo, e.msisdn, e.dest, e.link, e.ussd, e.ussd_end, y.rord, y.t AS reply
          FROM e CROSS JOIN LATERAL jsonb_array_elements_text(
                   CASE WHEN jsonb_typeof(e.replies) = 'array' THEN e.replies ELSE '[]' END)
               WITH ORDINALITY AS y(t, rord)
        UNION ALL
        SELECT e.ord, e.mo, e.msisdn, e.dest, e.link, e.ussd, e.ussd_end, 1000000,
               CASE WHEN EXISTS (SELECT 1 FROM households h WHERE h.code = e.join_code)
                    THEN e.rok ELSE e.runk END
          FROM e WHERE e.join_code <> ''),
    o AS MATERIALIZED (
        SELECT nextval('mt_messages_id_seq'::regclass) AS id, z.*
          FROM (SELECT * FROM r ORDER BY r.ord, r.rord) z),
    ins AS (
        INSERT INTO mt_messages (id, msisdn, source, text, kind, priority, state, owner, mo_id,
                                 link, ussd_session, ussd_end, attempts)
        SELECT o.id, o.msisdn, o.dest, o.reply,
               CASE WHEN o.ussd IS NULL THEN 'reply' ELSE 'ussd' END, 0, 'submitting', p_owner,
               o.mo, o.link, o.ussd, o.ussd_end, 1
          FROM o ORDER BY o.id)
    SELECT o.id, o.msisdn, o.reply, o.mo, o.link, o.ussd, o.ussd_end FROM o ORDER BY o.id;
END $$;

-- As in 026, with the insert of numbers run only when some number is not known.
CREATE OR REPLACE FUNCTION sg_mo_commit(p jsonb, p_rule text, p_owner text)
RETURNS TABLE (kind text, ord int, mo_id bigint, mt_id bigint, msisdn text, text text,
               link text, ussd_session text, ussd_end boolean)
LANGUAGE plpgsql AS $$
BEGIN
    IF p IS NULL OR jsonb_typeof(p) <> 'array' OR jsonb_array_length(p) = 0 THEN
        RETURN;
    END IF;
    IF NOT p->0 ? 'mo' THEN
        SELECT jsonb_agg(x.e || jsonb_build_object('mo', x.id, 'fresh', true, 'seen', true)
                         ORDER BY x.ord)
          INTO p
          FROM (SELECT y.e, y.ord, nextval('mo_messages_id_seq'::regclass) AS id
                  FROM jsonb_array_elements(p) WITH ORDINALITY AS y(e, ord) ORDER BY y.ord) x;
    END IF;
    -- numbers seen for the first time (the others' last_mo_at: sg_mo_apply, "seen")
    IF p @? '$[*] ? (!(@.known.type() == "boolean" && @.known == true))' THEN
        INSERT INTO subscribers AS s (msisdn, last_mo_at)
        SELECT DISTINCT x.e->>'msisdn', now() FROM jsonb_array_elements(p) AS x(e)
         WHERE NOT coalesce((x.e->>'known')::boolean, false)
         ORDER BY 1
        ON CONFLICT ON CONSTRAINT subscribers_pkey DO NOTHING;
    END IF;

    INSERT INTO mo_messages (id, link, smsc_id, msisdn, dest, text, partial, state,
                             received_at, processed_at)
    SELECT (x.e->>'mo')::bigint, x.e->'in'->>'link', coalesce(x.e->'in'->>'smsc_id', ''),
           x.e->>'msisdn', coalesce(x.e->'in'->>'dest', ''), x.e->'in'->>'text',
           coalesce((x.e->'in'->>'partial')::boolean, false), x.e->'in'->>'state',
           clock_timestamp(), CASE WHEN x.e->'in'->>'state' = 'processed' THEN now() END
      FROM jsonb_array_elements(p) WITH ORDINALITY AS x(e, ord)
     ORDER BY x.ord;

    RETURN QUERY SELECT 'mo'::text, x.ord::int, (x.e->>'mo')::bigint, NULL::bigint, NULL::text,
                        NULL::text, NULL::text, NULL::text, NULL::boolean
                   FROM jsonb_array_elements(p) WITH ORDINALITY AS x(e, ord) ORDER BY x.ord;
    RETURN QUERY SELECT 'mt'::text, NULL::int, a.mo_id, a.mt_id, a.msisdn, a.text, a.link,
                        a.ussd_session, a.ussd_end
                   FROM sg_mo_apply(p, p_rule, p_owner) a;
END $$;

ALTER FUNCTION sg_mo_apply(jsonb, text, text)
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION sg_mo_commit(jsonb, text, text)
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
