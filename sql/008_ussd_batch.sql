-- USSD steps in batches (issue #7: POST /ussd within 1 s under bursts).
-- core/ussd.c group-commits dialog steps as core/pipeline.c does for SMS: one
-- batch of each kind in flight, whatever arrives meanwhile goes into the next.
--
--   sg_ussd_loads(links, keys, msisdns)   the stored state of many dialogs and
--                                         their subscriber snapshots: one row
--                                         per input element (idx 1..n, in
--                                         order), the columns of sg_ussd_load
--   sg_ussd_steps(steps jsonb, rule, owner)
--                                         commits many dialog steps in one
--                                         transaction; one row per step
--                                         (idx 1..n, in order): the screen
--                                         actually committed, or NULLs when
--                                         the step has none
--
-- Each step has the format and the meaning of sg_ussd_step (006_ussd.sql):
-- MO row (channel ussd/http), subscriber upsert, ussd_sessions row, events
-- with source 'ussd', join, language, SMS flow state, the screen as an
-- mt_messages row of kind 'ussd' owned by '<owner>/ussd' (delivered at once
-- for HTTP), and the SMS hand-over. core/ussd.c puts at most one step of a
-- dialog in a batch (a dialog's steps are FIFO, one in flight); two dialogs
-- of the same number may share a batch and are then applied in input order
-- (sg_mo_apply's rule). Rows are locked in number / key order, as the SMS
-- pipeline does. They replace sg_ussd_step and sg_ussd_load, dropped at the
-- end of this file (nothing calls them any more).

CREATE FUNCTION sg_ussd_loads(p_link text[], p_key text[], p_msisdn text[])
RETURNS TABLE (idx int, found boolean, state text, ended boolean, started bigint,
               language text, opted_out boolean, flow_state text, flow_state_at bigint,
               help_at bigint, household text, hh_covered boolean, hh_members int,
               hh_skills int, self_levels text, best_quiz text, passed text)
LANGUAGE sql STABLE AS $$
    SELECT s.idx, u.link IS NOT NULL, coalesce(u.state, ''), u.ended_at IS NOT NULL,
           coalesce(extract(epoch FROM u.started_at)::bigint, 0),
           s.language, s.opted_out, s.flow_state, s.flow_state_at, s.help_at, s.household,
           s.hh_covered, s.hh_members, s.hh_skills, s.self_levels, s.best_quiz, s.passed
      FROM sg_sub_snapshots(p_msisdn) s
      LEFT JOIN ussd_sessions u ON u.link = p_link[s.idx] AND u.session_key = p_key[s.idx]
     ORDER BY s.idx
$$;

-- The numbers of a batch of inbound messages (p: a JSON array of elements
-- with "msisdn") were seen now: created if new, last_mo_at stamped; one
-- upsert per number, in number order (the lock order of every batch). Shared
-- with sg_mo_commit (010_mo_commit.sql).
CREATE FUNCTION sg_subscribers_seen(p jsonb) RETURNS void LANGUAGE sql AS $$
    INSERT INTO subscribers AS s (msisdn, last_mo_at)
    SELECT DISTINCT x.e->>'msisdn', now() FROM jsonb_array_elements(p) AS x(e) ORDER BY 1
    ON CONFLICT ON CONSTRAINT subscribers_pkey DO UPDATE SET last_mo_at = now()
$$;

CREATE FUNCTION sg_ussd_steps(p jsonb, p_rule text, p_owner text)
RETURNS TABLE (idx int, mt_id bigint, text text)
LANGUAGE plpgsql AS $$
DECLARE
    v_mo bigint[];     -- [step] = its MO id (NULL: the step has no input)
    v_apply jsonb;     -- the sg_mo_apply elements, in step order
    v_ids bigint[];
    v_texts text[];
    v_links text[];
    v_keys text[];
BEGIN
    IF p IS NULL OR jsonb_typeof(p) <> 'array' OR jsonb_array_length(p) = 0 THEN
        RETURN;
    END IF;

    PERFORM sg_subscribers_seen(p);

    -- dialog state: a dialog's first step (re)starts it, the others keep started_at
    INSERT INTO ussd_sessions AS u (link, session_key, msisdn, state, ended_at)
    SELECT x.e->>'link', x.e->>'key', x.e->>'msisdn', x.e->>'state',
           CASE WHEN coalesce((x.e->>'end')::boolean, false) THEN now() END
      FROM jsonb_array_elements(p) AS x(e)
     WHERE coalesce((x.e->>'begin')::boolean, false)
     ORDER BY 1, 2
    ON CONFLICT (link, session_key) DO UPDATE
       SET msisdn = excluded.msisdn, state = excluded.state, updated_at = now(),
           started_at = now(), ended_at = excluded.ended_at;
    INSERT INTO ussd_sessions AS u (link, session_key, msisdn, state, ended_at)
    SELECT x.e->>'link', x.e->>'key', x.e->>'msisdn', x.e->>'state',
           CASE WHEN coalesce((x.e->>'end')::boolean, false) THEN now() END
      FROM jsonb_array_elements(p) AS x(e)
     WHERE NOT coalesce((x.e->>'begin')::boolean, false)
     ORDER BY 1, 2
    ON CONFLICT (link, session_key) DO UPDATE
       SET msisdn = excluded.msisdn, state = excluded.state, updated_at = now(),
           ended_at = excluded.ended_at;

    -- MO rows of the steps with an input (ids increase in step order), and
    -- the sg_mo_apply elements: events, language, join, SMS flow state and
    -- the screens, by the same rules as SMS
    WITH x AS (
        SELECT x.ord, x.e FROM jsonb_array_elements(p) WITH ORDINALITY AS x(e, ord)),
    s AS MATERIALIZED (
        SELECT z.ord, z.e, nextval('mo_messages_id_seq'::regclass) AS id
          FROM (SELECT x.ord, x.e FROM x WHERE jsonb_typeof(x.e->'input') = 'string'
                 ORDER BY x.ord) z),
    ins AS (
        INSERT INTO mo_messages (id, link, msisdn, dest, text, channel, state, received_at)
        SELECT s.id, s.e->>'link', s.e->>'msisdn', coalesce(s.e->>'dest', ''), s.e->>'input',
               coalesce(s.e->>'channel', 'ussd'), 'received', clock_timestamp()
          FROM s ORDER BY s.id)
    SELECT array_agg(s.id ORDER BY x.ord),
           jsonb_agg(jsonb_build_object(
               'mo', s.id, 'msisdn', x.e->>'msisdn', 'src', 'ussd',
               'dest', coalesce(x.e->>'dest', ''),
               'state', coalesce(x.e->>'sms_state', ''),
               'sc', coalesce((x.e->>'sc')::boolean, false),
               'lang', coalesce(x.e->>'lang', ''), 'opt', 0, 'help', false,
               'join', coalesce(x.e->>'join', ''), 'rok', coalesce(x.e->>'rok', ''),
               'runk', coalesce(x.e->>'runk', ''),
               'replies', CASE WHEN coalesce(x.e->>'screen', '') = '' THEN '[]'::jsonb
                               ELSE jsonb_build_array(x.e->>'screen') END,
               'ev', coalesce(x.e->'ev', '[]'::jsonb), 'ussd', x.e->>'key',
               'end', coalesce((x.e->>'end')::boolean, false), 'link', x.e->>'link')
               ORDER BY x.ord)
      INTO v_mo, v_apply
      FROM x LEFT JOIN s ON s.ord = x.ord;

    SELECT array_agg(a.mt_id ORDER BY a.mt_id), array_agg(a.text ORDER BY a.mt_id),
           array_agg(a.link ORDER BY a.mt_id), array_agg(a.ussd_session ORDER BY a.mt_id)
      INTO v_ids, v_texts, v_links, v_keys
      FROM sg_mo_apply(v_apply, p_rule, p_owner) a;

    -- the screens belong to '<owner>/ussd'; HTTP ones are answered in the response
    UPDATE mt_messages m
       SET owner = p_owner || '/ussd', fold = true,
           state = CASE WHEN r.http THEN 'delivered' ELSE m.state END,
           nparts = CASE WHEN r.http THEN 1 ELSE m.nparts END,
           submitted_at = CASE WHEN r.http THEN now() END,
           final_at = CASE WHEN r.http THEN now() END
      FROM (SELECT a.id, coalesce((x.e->>'http')::boolean, false) AS http
              FROM unnest(v_ids, v_links, v_keys) AS a(id, link, key)
              JOIN jsonb_array_elements(p) AS x(e)
                ON x.e->>'link' = a.link AND x.e->>'key' = a.key) r
     WHERE m.id = r.id;

    -- the result (or the quiz so far) by SMS as well: an interactive reply
    INSERT INTO mt_messages (msisdn, text, kind, priority, fold, mo_id)
    SELECT x.e->>'msisdn', x.e->>'sms', 'reply', 0, true, v_mo[x.ord]
      FROM jsonb_array_elements(p) WITH ORDINALITY AS x(e, ord)
      JOIN subscribers s ON s.msisdn = x.e->>'msisdn' AND NOT s.opted_out
     WHERE coalesce(x.e->>'sms', '') <> ''
     ORDER BY x.ord;

    -- one row per step: its screen (a step commits at most one), NULLs for none
    RETURN QUERY
    WITH a AS (
        SELECT DISTINCT ON (a.link, a.key) a.id, a.text, a.link, a.key
          FROM unnest(v_ids, v_texts, v_links, v_keys) AS a(id, text, link, key)
         ORDER BY a.link, a.key, a.id)
    SELECT x.ord::int, a.id, a.text
      FROM jsonb_array_elements(p) WITH ORDINALITY AS x(e, ord)
      LEFT JOIN a ON a.link = x.e->>'link' AND a.key = x.e->>'key'
     ORDER BY x.ord;
END $$;

DROP FUNCTION sg_ussd_step(jsonb, text, text);
DROP FUNCTION sg_ussd_load(text, text, text);
DROP FUNCTION sg_sub_snapshot(text); -- (003) only sg_ussd_load used it
