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

-- Everything the flow engine needs to know about one subscriber.
CREATE FUNCTION sg_sub_snapshot(p_msisdn text,
    OUT language text, OUT opted_out boolean, OUT flow_state text, OUT flow_state_at bigint,
    OUT help_at bigint, OUT household text, OUT hh_covered boolean, OUT hh_members int,
    OUT hh_skills int, OUT self_levels text, OUT best_quiz text, OUT passed text)
LANGUAGE sql STABLE AS $$
    SELECT s.language, s.opted_out, s.flow_state,
           coalesce(extract(epoch FROM s.flow_state_at)::bigint, 0),
           coalesce(extract(epoch FROM s.help_at)::bigint, 0),
           coalesce(h.code, ''),
           coalesce((SELECT bool_or(n = 5) FROM (
                SELECT count(*) AS n FROM subscribers m JOIN proficiency p ON p.msisdn = m.msisdn
                WHERE m.household_id = s.household_id AND p.proficient GROUP BY m.msisdn) c), false),
           (SELECT count(*)::int FROM subscribers m WHERE m.household_id = s.household_id),
           coalesce((SELECT bit_or(1 << (k.position - 1)) FROM subscribers m
                JOIN proficiency p ON p.msisdn = m.msisdn AND p.proficient
                JOIN skills k ON k.code = p.skill
                WHERE m.household_id = s.household_id), 0),
           (SELECT string_agg(coalesce(p.self_level, -1)::text, ',' ORDER BY k.position)
              FROM skills k LEFT JOIN proficiency p ON p.skill = k.code AND p.msisdn = s.msisdn),
           (SELECT string_agg(coalesce(p.best_quiz, -1)::text, ',' ORDER BY k.position)
              FROM skills k LEFT JOIN proficiency p ON p.skill = k.code AND p.msisdn = s.msisdn),
           (SELECT string_agg(CASE WHEN p.quiz_passed_at IS NULL THEN '0' ELSE '1' END, ','
                              ORDER BY k.position)
              FROM skills k LEFT JOIN proficiency p ON p.skill = k.code AND p.msisdn = s.msisdn)
    FROM subscribers s LEFT JOIN households h ON h.id = s.household_id
    WHERE s.msisdn = p_msisdn
$$;

-- Commits a batch of inbound SMS and returns, per input row (idx 1..n), its
-- id and status ('new', 'duplicate', 'looping') and the subscriber snapshot.
CREATE FUNCTION sg_mo_ingest(p_link text[], p_smsc_id text[], p_msisdn text[], p_dest text[],
                             p_text text[], p_partial boolean[], p_dedupe_secs int,
                             p_loop_max int, p_loop_secs int)
RETURNS TABLE (idx int, mo_id bigint, status text, is_new boolean, language text,
               opted_out boolean, flow_state text, flow_state_at bigint, help_at bigint,
               household text, hh_covered boolean, hh_members int, hh_skills int,
               self_levels text, best_quiz text, passed text)
LANGUAGE plpgsql AS $$
DECLARE
    i int;
    v_id bigint;
    v_n int;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_msisdn), 0) LOOP
        idx := i;
        status := 'new';
        v_id := NULL;
        IF p_smsc_id[i] <> '' THEN
            SELECT m.id INTO v_id FROM mo_messages m
             WHERE m.link = p_link[i] AND m.smsc_id = p_smsc_id[i];
        END IF;
        IF v_id IS NULL AND p_dedupe_secs > 0 THEN
            SELECT m.id INTO v_id FROM mo_messages m
             WHERE m.msisdn = p_msisdn[i] AND m.text = p_text[i]
               AND m.received_at > clock_timestamp() - make_interval(secs => p_dedupe_secs)
             ORDER BY m.id DESC LIMIT 1;
        END IF;
        IF v_id IS NOT NULL THEN
            mo_id := v_id;
            status := 'duplicate';
            is_new := false;
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT count(*) INTO v_n FROM mo_messages m
         WHERE m.msisdn = p_msisdn[i] AND m.text = p_text[i]
           AND m.received_at > clock_timestamp() - make_interval(secs => p_loop_secs);
        IF v_n >= p_loop_max THEN
            status := 'looping';
        END IF;
        INSERT INTO mo_messages (link, smsc_id, msisdn, dest, text, partial, state, received_at)
        VALUES (p_link[i], p_smsc_id[i], p_msisdn[i], p_dest[i], p_text[i], p_partial[i],
                CASE WHEN status = 'looping' THEN 'looping' ELSE 'received' END, clock_timestamp())
        RETURNING id INTO mo_id;
        INSERT INTO subscribers (msisdn, last_mo_at) VALUES (p_msisdn[i], now())
        ON CONFLICT (msisdn) DO UPDATE SET last_mo_at = now()
        RETURNING (xmax = 0) INTO is_new;
        SELECT * INTO language, opted_out, flow_state, flow_state_at, help_at, household,
                      hh_covered, hh_members, hh_skills, self_levels, best_quiz, passed
          FROM sg_sub_snapshot(p_msisdn[i]);
        RETURN NEXT;
    END LOOP;
END $$;

-- Snapshot of MOs committed but never processed (after a crash), at least
-- p_min_age seconds old (periodic sweeps leave younger ones to their owner).
CREATE FUNCTION sg_mo_pending(p_limit int, p_min_age int)
RETURNS TABLE (mo_id bigint, link text, msisdn text, dest text, text text, partial boolean,
               language text, opted_out boolean, flow_state text, flow_state_at bigint,
               help_at bigint, household text, hh_covered boolean, hh_members int,
               hh_skills int, self_levels text, best_quiz text, passed text)
LANGUAGE sql STABLE AS $$
    SELECT m.id, m.link, m.msisdn, m.dest, m.text, m.partial, s.*
      FROM mo_messages m, sg_sub_snapshot(m.msisdn) s
     WHERE m.state = 'received'
       AND m.received_at <= clock_timestamp() - make_interval(secs => p_min_age)
     ORDER BY m.id LIMIT p_limit
$$;

-- Applies what the flow engine decided for a batch of MOs, in one
-- transaction, and returns the replies to send (already 'submitting' for
-- p_owner). Input: a JSON array of
--   {"mo":id, "msisdn":"84..", "src":"sms", "dest":"8079", "state":"..",
--    "sc":bool, "lang":"en"|"", "opt":-1|0|1, "help":bool, "join":"CODE"|"",
--    "rok":"..", "runk":"..", "replies":[".."], "ev":[[skill,"self"|"quiz",value,passed]],
--    "ussd":"session key"|null, "end":bool, "link":".."}
CREATE FUNCTION sg_mo_apply(p jsonb, p_rule text, p_owner text)
RETURNS TABLE (mt_id bigint, msisdn text, text text, mo_id bigint, link text,
               ussd_session text, ussd_end boolean)
LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    ev jsonb;
    r text;
    v_hh bigint;
    v_skill text;
    v_replies text[];
BEGIN
    FOR e IN SELECT * FROM jsonb_array_elements(p) LOOP
        msisdn := e->>'msisdn';
        mo_id := (e->>'mo')::bigint;
        link := coalesce(e->>'link', '');
        ussd_session := e->>'ussd';
        IF (e->>'sc')::boolean THEN
            UPDATE subscribers s SET flow_state = e->>'state', flow_state_at = now()
             WHERE s.msisdn = e->>'msisdn';
        END IF;
        IF coalesce(e->>'lang', '') <> '' THEN
            UPDATE subscribers s SET language = e->>'lang' WHERE s.msisdn = e->>'msisdn';
        END IF;
        IF (e->>'opt')::int = -1 THEN
            UPDATE subscribers s SET opted_out = true, opted_out_at = now()
             WHERE s.msisdn = e->>'msisdn';
            UPDATE mt_messages m SET state = 'cancelled', final_at = now()
             WHERE m.msisdn = e->>'msisdn' AND m.state = 'queued' AND m.priority > 0;
        ELSIF (e->>'opt')::int = 1 THEN
            UPDATE subscribers s SET opted_out = false WHERE s.msisdn = e->>'msisdn';
        END IF;
        IF (e->>'help')::boolean THEN
            UPDATE subscribers s SET help_at = now() WHERE s.msisdn = e->>'msisdn';
        END IF;
        FOR ev IN SELECT * FROM jsonb_array_elements(coalesce(e->'ev', '[]')) LOOP
            SELECT code INTO v_skill FROM skills WHERE position = (ev->>0)::int;
            INSERT INTO proficiency_events (msisdn, skill, kind, value, passed, source)
            VALUES (e->>'msisdn', v_skill, ev->>1, (ev->>2)::int,
                    CASE WHEN ev->>1 = 'quiz' THEN (ev->>3)::boolean END, e->>'src');
            INSERT INTO proficiency AS p (msisdn, skill) VALUES (e->>'msisdn', v_skill)
            ON CONFLICT DO NOTHING;
            IF ev->>1 = 'self' THEN
                UPDATE proficiency p SET self_level = (ev->>2)::int, self_at = now(),
                       self_source = e->>'src', updated_at = now()
                 WHERE p.msisdn = e->>'msisdn' AND p.skill = v_skill;
            ELSE
                UPDATE proficiency p SET best_quiz = greatest(p.best_quiz, (ev->>2)::int),
                       quiz_passed_at = CASE WHEN (ev->>3)::boolean
                                             THEN coalesce(p.quiz_passed_at, now())
                                             ELSE p.quiz_passed_at END,
                       quiz_failed_at = CASE WHEN (ev->>3)::boolean THEN p.quiz_failed_at
                                             ELSE now() END,
                       quiz_source = e->>'src', updated_at = now()
                 WHERE p.msisdn = e->>'msisdn' AND p.skill = v_skill;
            END IF;
            UPDATE proficiency p SET proficient = sg_is_proficient(p.self_level, p.quiz_passed_at, p_rule)
             WHERE p.msisdn = e->>'msisdn' AND p.skill = v_skill;
        END LOOP;
        v_replies := ARRAY(SELECT jsonb_array_elements_text(coalesce(e->'replies', '[]')));
        IF coalesce(e->>'join', '') <> '' THEN
            SELECT h.id INTO v_hh FROM households h WHERE h.code = e->>'join';
            IF v_hh IS NOT NULL THEN
                UPDATE subscribers s SET household_id = v_hh, joined_via = e->>'src'
                 WHERE s.msisdn = e->>'msisdn';
                v_replies := v_replies || (e->>'rok');
            ELSE
                v_replies := v_replies || (e->>'runk');
            END IF;
        END IF;
        FOREACH r IN ARRAY v_replies LOOP
            text := r;
            ussd_end := coalesce((e->>'end')::boolean, false);
            INSERT INTO mt_messages (msisdn, source, text, kind, priority, state, owner, mo_id,
                                     link, ussd_session, ussd_end, attempts)
            VALUES (e->>'msisdn', coalesce(e->>'dest', ''), r,
                    CASE WHEN ussd_session IS NULL THEN 'reply' ELSE 'ussd' END, 0,
                    'submitting', p_owner, mo_id, link, ussd_session, ussd_end, 1)
            RETURNING id INTO mt_id;
            RETURN NEXT;
        END LOOP;
        UPDATE mo_messages m SET state = 'processed', processed_at = now() WHERE m.id = mo_id;
    END LOOP;
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

-- Records submit_sm outcomes: one row per segment. status 0 = accepted with
-- smsc_id; a temporary error the gateway gave up retrying puts the message
-- back in the queue for later (failed after 10 attempts); any other status
-- fails the message with that status.
CREATE FUNCTION sg_mt_results(p_mt bigint[], p_part int[], p_nparts int[], p_link text[],
                              p_status int[], p_smsc text[], p_temp boolean[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    i int;
    d record;
BEGIN
    -- submit results and receipts for the same part may commit concurrently:
    -- serialise the two so a receipt that overtook its resp is never stranded
    PERFORM pg_advisory_xact_lock(7420002);
    FOR i IN 1 .. coalesce(cardinality(p_mt), 0) LOOP
        IF p_status[i] = 0 THEN
            INSERT INTO mt_parts (mt_id, part, link, smsc_id)
            VALUES (p_mt[i], p_part[i], p_link[i], p_smsc[i])
            ON CONFLICT (mt_id, part) DO UPDATE SET smsc_id = excluded.smsc_id,
                link = excluded.link, state = 'submitted', at = now();
            UPDATE mt_messages m SET nparts = p_nparts[i], parts_ok = m.parts_ok + 1,
                   link = p_link[i],
                   state = CASE WHEN m.state = 'submitting' AND m.parts_ok + 1 >= p_nparts[i]
                                THEN 'submitted' ELSE m.state END,
                   submitted_at = CASE WHEN m.parts_ok + 1 >= p_nparts[i] THEN now()
                                       ELSE m.submitted_at END
             WHERE m.id = p_mt[i];
            -- a receipt that overtook its submit_sm_resp
            DELETE FROM dlr_early e WHERE e.link = p_link[i] AND e.smsc_id = p_smsc[i]
            RETURNING e.state, e.err INTO d;
            IF FOUND THEN
                PERFORM sg_dlr_apply(ARRAY[p_link[i]], ARRAY[p_smsc[i]], ARRAY[d.state::int],
                                     ARRAY[d.err]);
            END IF;
        ELSIF p_temp[i] THEN
            UPDATE mt_messages m SET error_status = p_status[i],
                   state = CASE WHEN m.attempts >= 10 THEN 'failed' ELSE 'queued' END,
                   final_at = CASE WHEN m.attempts >= 10 THEN now() END,
                   next_attempt_at = now() + make_interval(secs => 30 * m.attempts)
             WHERE m.id = p_mt[i] AND m.state = 'submitting';
        ELSE
            UPDATE mt_messages m SET state = 'failed', error_status = p_status[i],
                   nparts = p_nparts[i], link = p_link[i], final_at = now()
             WHERE m.id = p_mt[i] AND m.state IN ('submitting', 'submitted', 'queued');
        END IF;
    END LOOP;
END $$;

-- Applies delivery receipts (message_state values). Unmatched receipts wait
-- in dlr_early for their submit_sm_resp.
CREATE FUNCTION sg_dlr_apply(p_link text[], p_smsc text[], p_state int[], p_err int[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    i int;
    v_part text;
    v_mt bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7420002); -- see sg_mt_results
    FOR i IN 1 .. coalesce(cardinality(p_smsc), 0) LOOP
        v_part := CASE p_state[i] WHEN 2 THEN 'delivered' WHEN 3 THEN 'expired'
                                  WHEN 4 THEN 'failed' WHEN 5 THEN 'failed' WHEN 8 THEN 'failed'
                                  ELSE NULL END;
        IF v_part IS NULL THEN
            CONTINUE; -- intermediate (enroute, accepted, unknown): nothing final yet
        END IF;
        UPDATE mt_parts p SET state = v_part, dlr_err = p_err[i], at = now()
         WHERE p.link = p_link[i] AND p.smsc_id = p_smsc[i] AND p.state = 'submitted'
        RETURNING p.mt_id INTO v_mt;
        IF NOT FOUND THEN
            IF NOT EXISTS (SELECT 1 FROM mt_parts p WHERE p.link = p_link[i] AND p.smsc_id = p_smsc[i]) THEN
                INSERT INTO dlr_early (link, smsc_id, state, err)
                VALUES (p_link[i], p_smsc[i], p_state[i], p_err[i])
                ON CONFLICT (link, smsc_id) DO UPDATE SET state = excluded.state, err = excluded.err;
            END IF;
            CONTINUE;
        END IF;
        IF v_part = 'delivered' THEN
            UPDATE mt_messages m SET parts_delivered = m.parts_delivered + 1,
                   state = CASE WHEN m.state = 'submitted' AND m.parts_delivered + 1 >= m.nparts
                                THEN 'delivered' ELSE m.state END,
                   final_at = CASE WHEN m.parts_delivered + 1 >= m.nparts THEN now()
                                   ELSE m.final_at END
             WHERE m.id = v_mt;
        ELSE
            UPDATE mt_messages m SET state = CASE WHEN v_part = 'expired' THEN 'expired' ELSE 'failed' END,
                   error_status = coalesce(p_err[i], m.error_status), final_at = now()
             WHERE m.id = v_mt AND m.state IN ('submitting', 'submitted');
        END IF;
    END LOOP;
END $$;

-- After a crash: what this instance had in flight is sent again, marked.
CREATE FUNCTION sg_mt_recover(p_owner text) RETURNS bigint LANGUAGE sql AS $$
    WITH u AS (
        UPDATE mt_messages SET state = 'queued', maybe_duplicate = true
         WHERE state = 'submitting' AND owner = p_owner
        RETURNING 1)
    SELECT count(*) FROM u
$$;
