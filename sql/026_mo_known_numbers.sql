-- 026_mo_known_numbers.sql — sg_mo_commit inserts only the numbers it does not know.
--
-- Every MO batch began with an insert of all its numbers, ON CONFLICT DO
-- NOTHING, so that a number's first MO creates its subscriber row. Most
-- numbers exist already (in the bench's conversations, five MOs in six), and
-- each existing one cost a speculative insert that met its conflict: about
-- 9 us per number (256 known numbers: 2.1-2.8 ms; tests/bench/sqlreplay.sh).
-- sg_mo_prepare has just read each number's subscriber row for the flow
-- engine, so the daemon knows which exist, and marks their elements "known":
-- only the others are inserted, still ON CONFLICT DO NOTHING (another batch
-- or instance may insert the same number in between). A number erased
-- between the read and the commit is not created again here; if its MO
-- records proficiency, the batch fails on the foreign key and is retried
-- (temporary error), and the retry's read finds the number unknown. A batch
-- without "known" (the previous daemon's, during an upgrade) is inserted
-- whole, as before.

-- As in 019, with the insert of numbers limited to elements not "known".
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
    SELECT DISTINCT x.e->>'msisdn', now() FROM jsonb_array_elements(p) AS x(e)
     WHERE NOT coalesce((x.e->>'known')::boolean, false)
     ORDER BY 1
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
