-- USSD dialogs (§3.3, §4.5): the two statements core/ussd.c runs.
--
--   sg_ussd_load(link, session_key, msisdn)   a dialog's stored state and the
--                                             subscriber snapshot (one row)
--   sg_ussd_step(step jsonb, rule, owner)     commits one dialog step in one
--                                             transaction, before the SMSC is
--                                             acknowledged and the screen sent
--
-- ussd_sessions.state is the dialog state (core/ussd.c format); ended_at is
-- set on the final screen. Screens are mt_messages rows of kind 'ussd'
-- (ussd_session, ussd_end); their owner is '<instance>/ussd' so crash recovery
-- (sg_mt_recover) never re-sends a screen of a dialog that died with the
-- process. HTTP callback screens are answered in the HTTP response, so they
-- are recorded as delivered at once.

CREATE FUNCTION sg_ussd_load(p_link text, p_key text, p_msisdn text)
RETURNS TABLE (found boolean, state text, ended boolean, started bigint,
               language text, opted_out boolean, flow_state text, flow_state_at bigint,
               help_at bigint, household text, hh_covered boolean, hh_members int,
               hh_skills int, self_levels text, best_quiz text, passed text)
LANGUAGE sql STABLE AS $$
    SELECT u.link IS NOT NULL, coalesce(u.state, ''), u.ended_at IS NOT NULL,
           coalesce(extract(epoch FROM u.started_at)::bigint, 0),
           s.language, s.opted_out, s.flow_state, s.flow_state_at, s.help_at, s.household,
           s.hh_covered, s.hh_members, s.hh_skills, s.self_levels, s.best_quiz, s.passed
      FROM (SELECT 1) one
      LEFT JOIN ussd_sessions u ON u.link = p_link AND u.session_key = p_key
      LEFT JOIN LATERAL sg_sub_snapshot(p_msisdn) s ON true
$$;

-- One step. Input (built by core/ussd.c):
--   {"link","key","msisdn","dest","channel":"ussd"|"http","input":text|null,
--    "state","begin":bool,"end":bool,"http":bool,"lang":"en"|"vi"|"",
--    "join":"CODE"|"","rok","runk","screen","sms","sc":bool,"sms_state",
--    "ev":[[skill,"self"|"quiz",value,passed]]}
-- Returns the screen actually committed (the join picks rok or runk).
CREATE FUNCTION sg_ussd_step(p jsonb, p_rule text, p_owner text)
RETURNS TABLE (mt_id bigint, text text)
LANGUAGE plpgsql AS $$
DECLARE
    v_mo bigint;
    v_end boolean := coalesce((p->>'end')::boolean, false);
    v_http boolean := coalesce((p->>'http')::boolean, false);
    r record;
BEGIN
    INSERT INTO subscribers (msisdn, last_mo_at) VALUES (p->>'msisdn', now())
    ON CONFLICT (msisdn) DO UPDATE SET last_mo_at = now();
    IF p->'input' IS NOT NULL AND jsonb_typeof(p->'input') = 'string' THEN
        INSERT INTO mo_messages (link, msisdn, dest, text, channel, state, received_at)
        VALUES (p->>'link', p->>'msisdn', coalesce(p->>'dest', ''), p->>'input',
                coalesce(p->>'channel', 'ussd'), 'received', clock_timestamp())
        RETURNING id INTO v_mo;
    END IF;
    INSERT INTO ussd_sessions AS u (link, session_key, msisdn, state, ended_at)
    VALUES (p->>'link', p->>'key', p->>'msisdn', p->>'state', CASE WHEN v_end THEN now() END)
    ON CONFLICT (link, session_key) DO UPDATE
       SET msisdn = excluded.msisdn, state = excluded.state, updated_at = now(),
           started_at = CASE WHEN coalesce((p->>'begin')::boolean, false) THEN now()
                             ELSE u.started_at END,
           ended_at = CASE WHEN v_end THEN now() END;
    -- events, language, join, SMS flow state and the screen: the same rules as SMS
    FOR r IN SELECT * FROM sg_mo_apply(jsonb_build_array(jsonb_build_object(
            'mo', v_mo, 'msisdn', p->>'msisdn', 'src', 'ussd', 'dest', coalesce(p->>'dest', ''),
            'state', coalesce(p->>'sms_state', ''), 'sc', coalesce((p->>'sc')::boolean, false),
            'lang', coalesce(p->>'lang', ''), 'opt', 0, 'help', false,
            'join', coalesce(p->>'join', ''), 'rok', coalesce(p->>'rok', ''),
            'runk', coalesce(p->>'runk', ''),
            'replies', CASE WHEN coalesce(p->>'screen', '') = '' THEN '[]'::jsonb
                            ELSE jsonb_build_array(p->>'screen') END,
            'ev', coalesce(p->'ev', '[]'::jsonb), 'ussd', p->>'key', 'end', v_end,
            'link', p->>'link')), p_rule, p_owner) LOOP
        UPDATE mt_messages m
           SET owner = p_owner || '/ussd', fold = true,
               state = CASE WHEN v_http THEN 'delivered' ELSE m.state END,
               nparts = CASE WHEN v_http THEN 1 ELSE m.nparts END,
               submitted_at = CASE WHEN v_http THEN now() END,
               final_at = CASE WHEN v_http THEN now() END
         WHERE m.id = r.mt_id;
        mt_id := r.mt_id;
        text := r.text;
        RETURN NEXT;
    END LOOP;
    -- the result (or the quiz so far) by SMS as well: an interactive reply
    IF coalesce(p->>'sms', '') <> '' THEN
        INSERT INTO mt_messages (msisdn, text, kind, priority, fold, mo_id)
        SELECT p->>'msisdn', p->>'sms', 'reply', 0, true, v_mo
          FROM subscribers s WHERE s.msisdn = p->>'msisdn' AND NOT s.opted_out;
    END IF;
END $$;
