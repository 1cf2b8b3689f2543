-- 019_mo_ids_early.sql — an MO batch's JSON goes to sg_mo_apply as the daemon sent it.
--
-- sg_mo_commit (017) took the daemon's elements, gave each MO its id, and
-- rebuilt the JSON for sg_mo_apply (jsonb_agg of every element with its
-- "in" removed and "mo", "fresh", "seen" added): about 1 ms of a 5 ms commit
-- of a batch (BENCH_PGSS), the whole batch parsed and serialised once more.
-- Now sg_mo_prepare reserves the ids (one per MO of the batch, in batch
-- order) and the daemon writes them, with "fresh" and "seen", into the
-- elements it sends; sg_mo_commit passes its input to sg_mo_apply unchanged.
-- A looping MO's element ({msisdn, mo, fresh, seen, in}) goes to sg_mo_apply
-- too: it has no flow outcome, so only its last_mo_at is stamped ("seen"),
-- which sg_mo_commit did with an update of its own.
--
-- sg_mo_prepare is now PL/pgSQL, in two statements joined by index: the
-- status of each MO (duplicate / looping / new) into arrays, then the
-- snapshots, one row per MO in batch order, each given its status by
-- position. The SQL version was planned on every call, and asked once per
-- MO whether the number is a subscriber, which its snapshot says anyway (the
-- planner sometimes made that a hash of every subscriber: a sequential scan
-- per batch).

DROP FUNCTION sg_mo_prepare(text[], text[], text[], text[], int, int, int);

-- As in 016, with is_new taken from the snapshot and each MO's id (mo_id).
CREATE FUNCTION sg_mo_prepare(p_link text[], p_smsc_id text[], p_msisdn text[], p_text text[],
                              p_dedupe_secs int, p_loop_max int, p_loop_secs int)
RETURNS TABLE (idx int, dup_of bigint, status text, is_new boolean, language text,
               opted_out boolean, flow_state text, flow_state_at bigint, help_at bigint,
               household text, hh_covered boolean, hh_members int, hh_skills int,
               self_levels text, best_quiz text, passed text, mo_id bigint)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    v_dup bigint[];
    v_status text[];
    v_id bigint[];
BEGIN
    SELECT coalesce(array_agg(d.dup_of ORDER BY d.idx), '{}'),
           coalesce(array_agg(CASE WHEN d.dup_of IS NOT NULL OR d.dup_in_batch THEN 'duplicate'
                                   WHEN d.n_db >= p_loop_max THEN 'looping' ELSE 'new' END
                              ORDER BY d.idx), '{}')
      INTO v_dup, v_status
      FROM (SELECT i.idx,
                   coalesce(
                       CASE WHEN i.smsc_id <> '' THEN
                           (SELECT m.id FROM mo_messages m
                             WHERE m.link = i.link AND m.smsc_id = i.smsc_id AND m.smsc_id <> ''
                             LIMIT 1) END,
                       CASE WHEN p_dedupe_secs > 0 THEN
                           (SELECT m.id FROM mo_messages m
                             WHERE m.msisdn = i.msisdn AND m.text = i.text
                               AND m.received_at > clock_timestamp()
                                                   - make_interval(secs => p_dedupe_secs)
                             ORDER BY m.id DESC LIMIT 1) END) AS dup_of,
                   i.smsc_id <> ''
                       AND row_number() OVER (PARTITION BY i.link, i.smsc_id ORDER BY i.idx) > 1
                       AS dup_in_batch,
                   (SELECT count(*) FROM mo_messages m
                     WHERE m.msisdn = i.msisdn AND m.text = i.text
                       AND m.received_at > clock_timestamp() - make_interval(secs => p_loop_secs))
                       AS n_db
              FROM unnest(p_link, p_smsc_id, p_msisdn, p_text) WITH ORDINALITY
                   AS i(link, smsc_id, msisdn, text, idx)) d;

    -- the MO rows' ids, increasing in batch order (duplicates' go unused)
    v_id := ARRAY(SELECT nextval('mo_messages_id_seq'::regclass)
                    FROM generate_series(1, cardinality(v_status)));

    -- one snapshot row per MO, in batch order (a number's own only for new MOs)
    RETURN QUERY
        SELECT s.idx, v_dup[s.idx], v_status[s.idx], s.msisdn IS NULL,
               coalesce(s.language, 'vi'), coalesce(s.opted_out, false),
               coalesce(s.flow_state, ''), coalesce(s.flow_state_at, 0),
               coalesce(s.help_at, 0), coalesce(s.household, ''), coalesce(s.hh_covered, false),
               coalesce(s.hh_members, 0), coalesce(s.hh_skills, 0), s.self_levels,
               s.best_quiz, s.passed, v_id[s.idx]
          FROM sg_sub_snapshots(ARRAY(SELECT CASE WHEN v_status[o] = 'new' THEN p_msisdn[o] END
                                        FROM generate_series(1, cardinality(v_status)) o)) s
         ORDER BY s.idx;
END $$;

-- As in 017, for elements in this version's daemon's form: each carries its
-- MO's id ("mo", reserved by sg_mo_prepare), "fresh" and "seen", looping MOs
-- included, and goes to sg_mo_apply as it is. A batch of the previous
-- version's daemon (no "mo"; during an upgrade) is first put in that form:
-- ids drawn here, in batch order.
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
    INSERT INTO subscribers AS s (msisdn, last_mo_at)
    SELECT DISTINCT x.e->>'msisdn', now() FROM jsonb_array_elements(p) AS x(e) ORDER BY 1
    ON CONFLICT ON CONSTRAINT subscribers_pkey DO NOTHING;

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

ALTER FUNCTION sg_mo_commit(jsonb, text, text)
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;

-- The heartbeat (007) in PL/pgSQL: the instances whose heartbeat is stale are
-- listed first, and only when there are some are their MTs looked for (by
-- mt_messages_inflight). As a SQL function it was planned on every call, and
-- its plan joined mt_messages to the (nearly always empty) list of dead
-- instances: 15 ms a beat on the quick bench's database, 240 ms under load.
CREATE OR REPLACE FUNCTION sg_instance_beat(p_name text, p_stale_s int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_dead text[];
    v_n bigint;
BEGIN
    INSERT INTO instances (name) VALUES (p_name)
        ON CONFLICT (name) DO UPDATE SET heartbeat_at = now();
    v_dead := ARRAY(SELECT i.name FROM instances i
                     WHERE i.name <> p_name
                       AND i.heartbeat_at < now() - make_interval(secs => p_stale_s));
    IF cardinality(v_dead) = 0 THEN
        RETURN 0;
    END IF;
    UPDATE mt_messages m SET state = 'queued', maybe_duplicate = true
     WHERE m.state = 'submitting' AND m.owner = ANY (v_dead);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;
