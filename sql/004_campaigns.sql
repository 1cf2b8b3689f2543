-- Campaigns (§3.4, §4.2, §8): quiet hours, scheduled broadcasts and skill
-- reminders, done by the database so that several skillgated instances on
-- one database share the work (FOR UPDATE SKIP LOCKED) and nothing that
-- matters lives only in memory. core/sched.c calls, in bounded batches:
--   sg_campaign_configure(settings jsonb, instance)   at start-up
--   sg_broadcast_step(now, chunk)                      resolve one chunk of one due broadcast
--   sg_reminders_plan(now, limit, horizon)             create reminder rows
--   sg_reminders_dispatch(now, limit)                  turn due reminders into outbox rows
-- and skillctl / the HTTP API call sg_broadcast_create, sg_broadcast_cancel,
-- sg_broadcast_counts. Every function that depends on time takes "now" as a
-- parameter (NULL = the database clock) so tests can move the clock.
--
-- Local times (quiet hours, "today" for the caps, dates without an offset)
-- are computed in the campaign time zone with AT TIME ZONE, so they are right
-- whatever the server's TimeZone is.

-- The [campaign] settings the SQL side needs. One row; written by each daemon
-- at start-up (all instances are expected to share one configuration).
CREATE TABLE campaign_settings (
    id                        boolean PRIMARY KEY DEFAULT true CHECK (id),
    timezone                  text NOT NULL DEFAULT 'Asia/Ho_Chi_Minh',
    quiet_hours               text NOT NULL DEFAULT '21:00-07:00',
    daily_cap                 int NOT NULL DEFAULT 1,        -- 0 = no cap
    mt_validity               int NOT NULL DEFAULT 86400,    -- seconds
    default_rate              double precision NOT NULL DEFAULT 0, -- msg/s when a broadcast has none; 0 = no spacing
    reminder_max_per_skill    int NOT NULL DEFAULT 3,
    reminder_unfinished_delay int NOT NULL DEFAULT 86400,
    reminder_failed_delay     int NOT NULL DEFAULT 259200,
    reminder_next_delay       int NOT NULL DEFAULT 86400,
    flow_idle_timeout         int NOT NULL DEFAULT 86400,
    reminder_texts            jsonb NOT NULL DEFAULT '{}',  -- {"vi": {"unfinished": ".."}, "en": {..}}
    updated_by                text NOT NULL DEFAULT '',
    updated_at                timestamptz NOT NULL DEFAULT now()
);
INSERT INTO campaign_settings DEFAULT VALUES;

ALTER TABLE broadcasts ADD COLUMN send_base timestamptz;    -- first send time: origin of the rate spacing
ALTER TABLE broadcasts ADD COLUMN resolved_at timestamptz;  -- recipients all resolved
ALTER TABLE broadcasts ADD COLUMN cancelled_at timestamptz;
CREATE INDEX broadcasts_due ON broadcasts (start_at) WHERE state IN ('scheduled', 'resolving');

-- A reminder "fires" once per anchor (the event it is about: the quiz
-- start, the failed attempt, the pass of the previous skill); a new event
-- is a new anchor, an edited field cancels the old fire at dispatch time.
ALTER TABLE reminders ADD COLUMN anchor_at timestamptz;
ALTER TABLE reminders ADD COLUMN sent_at timestamptz;
ALTER TABLE reminders ADD COLUMN reason text;               -- why skipped or cancelled
CREATE UNIQUE INDEX reminders_fire ON reminders (msisdn, skill, kind, anchor_at);
CREATE INDEX reminders_sent ON reminders (msisdn, sent_at) WHERE state = 'sent';

CREATE INDEX subscribers_quiz_flow ON subscribers (flow_state_at) WHERE flow_state LIKE 'Q:%';
CREATE INDEX proficiency_failed ON proficiency (quiz_failed_at)
    WHERE quiz_failed_at IS NOT NULL AND quiz_passed_at IS NULL;
CREATE INDEX proficiency_passed ON proficiency (quiz_passed_at) WHERE quiz_passed_at IS NOT NULL;

-- ---------------------------------------------------------------------
-- Settings
-- ---------------------------------------------------------------------

-- Validates quiet hours 'HH:MM-HH:MM' (or '' = none); raises 22023 otherwise.
CREATE FUNCTION sg_quiet_check(p_quiet text) RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF coalesce(p_quiet, '') <> ''
       AND (p_quiet !~ '^([01]?[0-9]|2[0-3]):[0-5][0-9]-([01]?[0-9]|2[0-4]):[0-5][0-9]$') THEN
        RAISE EXCEPTION 'quiet hours "%" are not HH:MM-HH:MM', p_quiet USING ERRCODE = '22023';
    END IF;
END $$;

-- Writes the settings from a JSON object with the [campaign] key names
-- (missing keys keep their value). Validates the time zone and quiet hours.
CREATE FUNCTION sg_campaign_configure(p jsonb, p_by text DEFAULT '')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p ? 'timezone' THEN
        PERFORM now() AT TIME ZONE (p->>'timezone'); -- raises for an unknown zone
    END IF;
    PERFORM sg_quiet_check(p->>'quiet_hours');
    UPDATE campaign_settings SET
        timezone = coalesce(p->>'timezone', timezone),
        quiet_hours = coalesce(p->>'quiet_hours', quiet_hours),
        daily_cap = coalesce((p->>'daily_cap')::int, daily_cap),
        mt_validity = coalesce((p->>'mt_validity')::int, mt_validity),
        default_rate = coalesce((p->>'default_rate')::double precision, default_rate),
        reminder_max_per_skill = coalesce((p->>'reminder_max_per_skill')::int, reminder_max_per_skill),
        reminder_unfinished_delay = coalesce((p->>'reminder_unfinished_delay')::int,
                                             reminder_unfinished_delay),
        reminder_failed_delay = coalesce((p->>'reminder_failed_delay')::int, reminder_failed_delay),
        reminder_next_delay = coalesce((p->>'reminder_next_delay')::int, reminder_next_delay),
        flow_idle_timeout = coalesce((p->>'flow_idle_timeout')::int, flow_idle_timeout),
        reminder_texts = coalesce(p->'reminder_texts', reminder_texts),
        updated_by = coalesce(p_by, ''), updated_at = now();
END $$;

-- ---------------------------------------------------------------------
-- Local time and quiet hours
-- ---------------------------------------------------------------------

-- Midnight of ts's day in time zone tz.
CREATE FUNCTION sg_local_day_start(p_ts timestamptz, p_tz text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT date_trunc('day', p_ts AT TIME ZONE p_tz) AT TIME ZONE p_tz
$$;

-- p_ts when it is outside the quiet hours p_quiet ('HH:MM-HH:MM' local time
-- in p_tz, may cross midnight; '' = none), else the end of that quiet
-- period (e.g. 07:00 local).
CREATE FUNCTION sg_next_allowed(p_ts timestamptz, p_tz text, p_quiet text)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    qs time;
    qe time;
    l timestamp;
    lt time;
    ld date;
BEGIN
    IF p_ts IS NULL OR coalesce(p_quiet, '') = '' THEN
        RETURN p_ts;
    END IF;
    PERFORM sg_quiet_check(p_quiet);
    qs := split_part(p_quiet, '-', 1)::time;
    qe := split_part(p_quiet, '-', 2)::time;
    IF qs = qe THEN
        RETURN p_ts;
    END IF;
    l := p_ts AT TIME ZONE p_tz;
    lt := l::time;
    ld := l::date;
    IF qs < qe THEN -- e.g. 12:00-13:30, same day
        IF lt >= qs AND lt < qe THEN
            RETURN (ld + qe) AT TIME ZONE p_tz;
        END IF;
    ELSE            -- e.g. 21:00-07:00, across midnight
        IF lt >= qs THEN
            RETURN (ld + 1 + qe) AT TIME ZONE p_tz;
        ELSIF lt < qe THEN
            RETURN (ld + qe) AT TIME ZONE p_tz;
        END IF;
    END IF;
    RETURN p_ts;
END $$;

-- For an allowed p_ts: when the next quiet period starts (NULL: never).
CREATE FUNCTION sg_next_quiet_start(p_ts timestamptz, p_tz text, p_quiet text)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    qs time;
    l timestamp;
BEGIN
    IF coalesce(p_quiet, '') = '' OR split_part(p_quiet, '-', 1)::time = split_part(p_quiet, '-', 2)::time THEN
        RETURN NULL;
    END IF;
    qs := split_part(p_quiet, '-', 1)::time;
    l := p_ts AT TIME ZONE p_tz;
    IF l::time < qs THEN
        RETURN (l::date + qs) AT TIME ZONE p_tz;
    END IF;
    RETURN (l::date + 1 + qs) AT TIME ZONE p_tz;
END $$;

-- The instant p_secs seconds of allowed (non-quiet) time after p_ts (itself
-- first moved out of the quiet hours): how a broadcast's rate spacing
-- pauses over the night instead of piling up at 07:00.
CREATE FUNCTION sg_add_allowed(p_ts timestamptz, p_secs double precision, p_tz text, p_quiet text)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    t timestamptz := sg_next_allowed(p_ts, p_tz, p_quiet);
    rem double precision := greatest(coalesce(p_secs, 0), 0);
    ws timestamptz;
BEGIN
    FOR i IN 1 .. 10000 LOOP
        ws := sg_next_quiet_start(t, p_tz, p_quiet);
        IF ws IS NULL OR t + make_interval(secs => rem) < ws THEN
            RETURN t + make_interval(secs => rem);
        END IF;
        rem := rem - extract(epoch FROM ws - t);
        t := sg_next_allowed(ws, p_tz, p_quiet);
    END LOOP;
    RETURN t + make_interval(secs => rem);
END $$;

-- A time given by staff: with an offset (or Z) as is, without one in the
-- campaign time zone; a bare date is local midnight.
CREATE FUNCTION sg_local_time(p text, p_tz text) RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p IS NULL OR p !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)? *(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)?$' THEN
        RAISE EXCEPTION '"%" is not a date or time (use e.g. 2026-10-01T08:00:00+07:00)', p
            USING ERRCODE = '22023';
    END IF;
    IF p ~ '(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$' AND p ~ '[Tt ]' THEN
        RETURN p::timestamptz;
    END IF;
    RETURN p::timestamp AT TIME ZONE p_tz;
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_parameter_value THEN
    RAISE EXCEPTION '"%" is not a date or time (use e.g. 2026-10-01T08:00:00+07:00)', p
        USING ERRCODE = '22023';
END $$;

-- ---------------------------------------------------------------------
-- Segments (§4.2)
-- ---------------------------------------------------------------------

-- The SQL condition (over subscribers aliased "s") that a list of validated
-- segment objects stands for: the OR of the segments, each the AND of its
-- filters. Values are quoted with format(%L). missing_skills: proficient in
-- none of them; covered: the household has a member proficient in all five
-- (a number without a household is not covered). Built once per chunk so
-- the planner sees plain joins instead of a function call per row.
CREATE FUNCTION sg_segment_sql(p_segs jsonb) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    e jsonb;
    parts text[];
    ors text[] := '{}';
BEGIN
    FOR e IN SELECT * FROM jsonb_array_elements(p_segs) LOOP
        parts := ARRAY['true'];
        IF e ? 'language' THEN
            parts := parts || format('s.language = %L', e->>'language');
        END IF;
        IF e ? 'registered_since' THEN
            parts := parts || format('s.registered_at >= %L::timestamptz', e->>'registered_since');
        END IF;
        IF e ? 'commune' THEN
            parts := parts || format('s.household_id IN (SELECT h.id FROM households h WHERE h.commune_code = %L)',
                                     e->>'commune');
        END IF;
        IF e ? 'district' THEN
            parts := parts || format('s.household_id IN (SELECT h.id FROM households h JOIN localities c ON c.code = h.commune_code WHERE c.parent_code = %L)',
                                     e->>'district');
        END IF;
        IF e ? 'province' THEN
            parts := parts || format('s.household_id IN (SELECT h.id FROM households h JOIN localities c ON c.code = h.commune_code JOIN localities d ON d.code = c.parent_code WHERE d.parent_code = %L)',
                                     e->>'province');
        END IF;
        IF e ? 'missing_skills' THEN
            parts := parts || format('NOT EXISTS (SELECT 1 FROM proficiency p WHERE p.msisdn = s.msisdn AND p.proficient AND p.skill = ANY (%L::text[]))',
                                     ARRAY(SELECT jsonb_array_elements_text(e->'missing_skills')));
        END IF;
        IF e ? 'covered' THEN
            parts := parts || format('%s EXISTS (SELECT 1 FROM subscribers m JOIN proficiency p ON p.msisdn = m.msisdn AND p.proficient WHERE m.household_id = s.household_id GROUP BY m.msisdn HAVING count(*) >= 5)',
                                     CASE WHEN (e->>'covered')::boolean THEN '' ELSE 'NOT' END);
        END IF;
        ors := ors || ('(' || array_to_string(parts, ' AND ') || ')');
    END LOOP;
    IF cardinality(ors) = 0 THEN
        RETURN 'false';
    END IF;
    RETURN array_to_string(ors, ' OR ');
END $$;

-- A segment is one object or an array of objects (a number matching
-- several of them, or one several ways, is still one recipient).
CREATE FUNCTION sg_segment_list(p_seg jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p_seg) = 'array' THEN p_seg
                WHEN p_seg IS NULL THEN '[{}]'::jsonb
                ELSE jsonb_build_array(p_seg) END
$$;

-- Validates and normalises one segment object; raises 22023 with a clear
-- message on the first problem.
CREATE FUNCTION sg_segment_check(p_seg jsonb, p_tz text) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    k text;
    s jsonb;
    v text;
    lvl text;
    par text;
BEGIN
    IF jsonb_typeof(p_seg) <> 'object' THEN
        RAISE EXCEPTION 'segment must be a JSON object' USING ERRCODE = '22023';
    END IF;
    s := jsonb_strip_nulls(p_seg);
    FOR k IN SELECT jsonb_object_keys(s) LOOP
        IF k NOT IN ('province', 'district', 'commune', 'missing_skills', 'language', 'covered',
                     'registered_since') THEN
            RAISE EXCEPTION 'unknown segment field "%" (known: province, district, commune, missing_skills, language, covered, registered_since)', k
                USING ERRCODE = '22023';
        END IF;
        IF k IN ('province', 'district', 'commune') THEN
            IF jsonb_typeof(s->k) NOT IN ('string', 'number') THEN
                RAISE EXCEPTION 'segment %: a locality code is expected', k USING ERRCODE = '22023';
            END IF;
            v := s->>k;
            IF v = '' THEN
                s := s - k;
                CONTINUE;
            END IF;
            SELECT level INTO lvl FROM localities WHERE code = v;
            IF lvl IS NULL THEN
                RAISE EXCEPTION 'segment %: unknown locality code "%"', k, v USING ERRCODE = '22023';
            ELSIF lvl <> k THEN
                RAISE EXCEPTION 'segment %: "%" is a % code', k, v, lvl USING ERRCODE = '22023';
            END IF;
            s := jsonb_set(s, ARRAY[k], to_jsonb(v));
        ELSIF k = 'missing_skills' THEN
            IF jsonb_typeof(s->k) = 'string' THEN -- "payment,safety"
                s := jsonb_set(s, '{missing_skills}', to_jsonb(ARRAY(
                    SELECT btrim(x) FROM unnest(string_to_array(s->>k, ',')) x WHERE btrim(x) <> '')));
            END IF;
            IF jsonb_typeof(s->k) <> 'array' OR jsonb_array_length(s->k) = 0 THEN
                RAISE EXCEPTION 'segment missing_skills: a non-empty list of skill codes is expected'
                    USING ERRCODE = '22023';
            END IF;
            FOR v IN SELECT jsonb_array_elements_text(s->k) LOOP
                IF NOT EXISTS (SELECT 1 FROM skills WHERE code = v) THEN
                    RAISE EXCEPTION 'segment missing_skills: unknown skill "%" (known: %)', v,
                        (SELECT string_agg(code, ', ' ORDER BY position) FROM skills)
                        USING ERRCODE = '22023';
                END IF;
            END LOOP;
        ELSIF k = 'language' THEN
            IF s->>k NOT IN ('vi', 'en') THEN
                RAISE EXCEPTION 'segment language: "vi" or "en" expected, not "%"', s->>k
                    USING ERRCODE = '22023';
            END IF;
        ELSIF k = 'covered' THEN
            IF jsonb_typeof(s->k) = 'string' AND lower(s->>k) IN ('yes', 'no', 'true', 'false') THEN
                s := jsonb_set(s, '{covered}', to_jsonb(lower(s->>k) IN ('yes', 'true')));
            ELSIF jsonb_typeof(s->k) <> 'boolean' THEN
                RAISE EXCEPTION 'segment covered: true or false expected' USING ERRCODE = '22023';
            END IF;
        ELSIF k = 'registered_since' THEN -- stored as an absolute time
            s := jsonb_set(s, '{registered_since}', to_jsonb(sg_local_time(s->>k, p_tz)));
        END IF;
    END LOOP;
    -- nested localities must agree
    IF s ? 'commune' AND s ? 'district' THEN
        SELECT parent_code INTO par FROM localities WHERE code = s->>'commune';
        IF par <> s->>'district' THEN
            RAISE EXCEPTION 'segment: commune % is not in district %', s->>'commune', s->>'district'
                USING ERRCODE = '22023';
        END IF;
    END IF;
    IF s ? 'district' AND s ? 'province' THEN
        SELECT parent_code INTO par FROM localities WHERE code = s->>'district';
        IF par <> s->>'province' THEN
            RAISE EXCEPTION 'segment: district % is not in province %', s->>'district', s->>'province'
                USING ERRCODE = '22023';
        END IF;
    END IF;
    IF s ? 'commune' AND s ? 'province' AND NOT s ? 'district' THEN
        SELECT d.parent_code INTO par FROM localities c JOIN localities d ON d.code = c.parent_code
         WHERE c.code = s->>'commune';
        IF par <> s->>'province' THEN
            RAISE EXCEPTION 'segment: commune % is not in province %', s->>'commune', s->>'province'
                USING ERRCODE = '22023';
        END IF;
    END IF;
    RETURN s;
END $$;

-- Numbers a segment matches right now (opted-out numbers excluded), for a
-- preview before creating a broadcast.
CREATE FUNCTION sg_segment_count(p_segment jsonb) RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_tz text := (SELECT timezone FROM campaign_settings);
    v_segs jsonb := '[]';
    e jsonb;
    v_n bigint;
BEGIN
    FOR e IN SELECT * FROM jsonb_array_elements(sg_segment_list(p_segment)) LOOP
        v_segs := v_segs || jsonb_build_array(sg_segment_check(e, v_tz));
    END LOOP;
    EXECUTE 'SELECT count(*) FROM subscribers s WHERE NOT s.opted_out AND (' || sg_segment_sql(v_segs) || ')'
       INTO v_n;
    RETURN v_n;
END $$;

-- ---------------------------------------------------------------------
-- Broadcasts
-- ---------------------------------------------------------------------

-- Creates a broadcast from the §4.2 body:
--   {"name", "text": {"vi", "en"}, "segment": {..} or [{..}, ..],
--    "start_at", "end_at", "rate"}
-- Times without an offset are campaign-local. Raises 22023 on bad input.
CREATE FUNCTION sg_broadcast_create(p jsonb, p_by text DEFAULT '')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_tz text := (SELECT timezone FROM campaign_settings);
    v_segs jsonb := '[]';
    e jsonb;
    v_vi text;
    v_en text;
    v_start timestamptz;
    v_end timestamptz;
    v_rate int;
    v_id bigint;
    k text;
BEGIN
    IF p IS NULL OR jsonb_typeof(p) <> 'object' THEN
        RAISE EXCEPTION 'broadcast: a JSON object is expected' USING ERRCODE = '22023';
    END IF;
    FOR k IN SELECT jsonb_object_keys(p) LOOP
        IF k NOT IN ('name', 'text', 'segment', 'start_at', 'end_at', 'rate') THEN
            RAISE EXCEPTION 'broadcast: unknown field "%"', k USING ERRCODE = '22023';
        END IF;
    END LOOP;
    IF coalesce(btrim(p->>'name'), '') = '' THEN
        RAISE EXCEPTION 'broadcast: name is required' USING ERRCODE = '22023';
    END IF;
    IF length(p->>'name') > 200 THEN
        RAISE EXCEPTION 'broadcast: name is longer than 200 characters' USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(p->'text') IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'broadcast: text {"vi": .., "en": ..} is required' USING ERRCODE = '22023';
    END IF;
    FOR k IN SELECT jsonb_object_keys(p->'text') LOOP
        IF k NOT IN ('vi', 'en') THEN
            RAISE EXCEPTION 'broadcast: text language "%" is not vi or en', k USING ERRCODE = '22023';
        END IF;
    END LOOP;
    v_vi := coalesce(btrim(p->'text'->>'vi'), '');
    v_en := coalesce(btrim(p->'text'->>'en'), '');
    IF v_vi = '' AND v_en = '' THEN
        RAISE EXCEPTION 'broadcast: a text in vi or en is required' USING ERRCODE = '22023';
    END IF;
    IF length(v_vi) > 1000 OR length(v_en) > 1000 THEN
        RAISE EXCEPTION 'broadcast: a text is longer than 1000 characters' USING ERRCODE = '22023';
    END IF;
    IF p ? 'segment' AND jsonb_typeof(p->'segment') NOT IN ('object', 'array', 'null') THEN
        RAISE EXCEPTION 'broadcast: segment must be an object or a list of objects' USING ERRCODE = '22023';
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(sg_segment_list(CASE WHEN jsonb_typeof(p->'segment') = 'null'
                                                                     THEN NULL ELSE p->'segment' END)) LOOP
        v_segs := v_segs || jsonb_build_array(sg_segment_check(e, v_tz));
    END LOOP;
    IF jsonb_array_length(v_segs) = 0 THEN
        RAISE EXCEPTION 'broadcast: segment list is empty' USING ERRCODE = '22023';
    END IF;
    IF coalesce(p->>'start_at', '') = '' THEN
        RAISE EXCEPTION 'broadcast: start_at is required' USING ERRCODE = '22023';
    END IF;
    v_start := sg_local_time(p->>'start_at', v_tz);
    IF coalesce(p->>'end_at', '') <> '' THEN
        v_end := sg_local_time(p->>'end_at', v_tz);
        IF v_end <= v_start THEN
            RAISE EXCEPTION 'broadcast: end_at must be after start_at' USING ERRCODE = '22023';
        END IF;
    END IF;
    IF p ? 'rate' AND jsonb_typeof(p->'rate') <> 'null' THEN
        IF jsonb_typeof(p->'rate') <> 'number' OR (p->>'rate')::numeric <> trunc((p->>'rate')::numeric)
           OR (p->>'rate')::numeric < 1 OR (p->>'rate')::numeric > 100000 THEN
            RAISE EXCEPTION 'broadcast: rate must be a whole number of messages per second, 1 to 100000'
                USING ERRCODE = '22023';
        END IF;
        v_rate := (p->>'rate')::int;
    END IF;
    INSERT INTO broadcasts (name, text_vi, text_en, segment, start_at, end_at, rate, created_by)
    VALUES (btrim(p->>'name'), v_vi, v_en,
            CASE WHEN jsonb_array_length(v_segs) = 1 THEN v_segs->0 ELSE v_segs END,
            v_start, v_end, v_rate, coalesce(p_by, ''))
    RETURNING id INTO v_id;
    RETURN v_id;
END $$;

-- One step of the broadcast work, safe to run from several instances:
-- marks finished broadcasts done, then claims one due broadcast
-- ('scheduled' or 'resolving', start_at <= now; FOR UPDATE SKIP LOCKED) and
-- resolves the next p_chunk recipients (subscribers in msisdn order after
-- the last one resolved): each number once (broadcast_recipients primary
-- key; the row lock serialises the chunks), opted-out numbers left out, the
-- text rendered in the recipient's language (or the other one when empty:
-- {missing_skills} = names of the skills of the segment's list, or of all
-- five, the recipient is not proficient in; {household} = household code),
-- and an outbox row (kind broadcast, priority 1) queued at
-- send_base + ordinal / rate seconds of allowed time (quiet hours skipped).
-- Numbers whose time would fall after end_at are 'skipped'. When a chunk
-- comes back short the broadcast is 'sending'. Returns what it did (no row
-- when nothing was due).
CREATE FUNCTION sg_broadcast_step(p_now timestamptz DEFAULT NULL, p_chunk int DEFAULT 10000)
RETURNS TABLE (broadcast_id bigint, added int, state text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    cs campaign_settings;
    b broadcasts;
    v_segs jsonb;
    v_skills text[];
    v_after text;
    v_list text[];
    v_rate double precision;
    v_n int;
    v_state text;
BEGIN
    SELECT * INTO cs FROM campaign_settings;
    UPDATE broadcasts x SET state = 'done'
     WHERE x.id IN (SELECT y.id FROM broadcasts y WHERE y.state = 'sending'
                       AND NOT EXISTS (SELECT 1 FROM mt_messages m WHERE m.broadcast_id = y.id
                                          AND m.state IN ('queued', 'submitting'))
                     FOR UPDATE SKIP LOCKED);

    SELECT * INTO b FROM broadcasts x
     WHERE x.state IN ('scheduled', 'resolving') AND x.start_at <= v_now
     ORDER BY x.start_at, x.id LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF b.state = 'scheduled' OR b.send_base IS NULL THEN
        b.send_base := sg_next_allowed(greatest(b.start_at, v_now), cs.timezone, cs.quiet_hours);
        UPDATE broadcasts x SET state = 'resolving', send_base = b.send_base WHERE x.id = b.id;
    END IF;
    v_segs := sg_segment_list(b.segment);
    v_skills := ARRAY(SELECT DISTINCT jsonb_array_elements_text(e->'missing_skills')
                        FROM jsonb_array_elements(v_segs) e WHERE e ? 'missing_skills');
    v_after := coalesce((SELECT max(r.msisdn) FROM broadcast_recipients r WHERE r.broadcast_id = b.id), '');
    v_rate := coalesce(b.rate::double precision, cs.default_rate);

    EXECUTE 'SELECT coalesce(array_agg(msisdn ORDER BY msisdn), ''{}'') FROM (SELECT s.msisdn FROM subscribers s'
         || ' WHERE s.msisdn > $1 AND NOT s.opted_out AND (' || sg_segment_sql(v_segs) || ')'
         || ' ORDER BY s.msisdn LIMIT $2) x'
       INTO v_list USING v_after, p_chunk;

    WITH cand AS (
        SELECT s.msisdn, s.language, s.household_id,
               row_number() OVER (ORDER BY s.msisdn) - 1 + b.targeted AS ord
          FROM subscribers s WHERE s.msisdn = ANY (v_list)),
    timed AS (
        SELECT c.*, h.code AS household,
               CASE WHEN c.language = 'en' AND b.text_en <> '' THEN b.text_en
                    WHEN b.text_vi <> '' THEN b.text_vi ELSE b.text_en END AS tmpl,
               sg_add_allowed(b.send_base, CASE WHEN v_rate > 0 THEN c.ord / v_rate ELSE 0 END,
                              cs.timezone, cs.quiet_hours) AS at
          FROM cand c LEFT JOIN households h ON h.id = c.household_id),
    mt AS (
        INSERT INTO mt_messages (msisdn, text, kind, priority, state, broadcast_id, next_attempt_at,
                                 expires_at)
        SELECT t.msisdn,
               replace(CASE WHEN strpos(t.tmpl, '{missing_skills}') > 0
                            THEN replace(t.tmpl, '{missing_skills}', coalesce((
                                SELECT string_agg(CASE WHEN t.language = 'en' THEN k.name_en
                                                       ELSE k.name_vi END, ', ' ORDER BY k.position)
                                  FROM skills k
                                 WHERE (cardinality(v_skills) = 0 OR k.code = ANY (v_skills))
                                   AND NOT EXISTS (SELECT 1 FROM proficiency p
                                                    WHERE p.msisdn = t.msisdn AND p.skill = k.code
                                                      AND p.proficient)), ''))
                            ELSE t.tmpl END,
                       '{household}', coalesce(t.household, '')),
               'broadcast', 1, 'queued', b.id, t.at,
               coalesce(b.end_at, t.at + make_interval(secs => cs.mt_validity))
          FROM timed t
         WHERE b.end_at IS NULL OR t.at <= b.end_at
        RETURNING id, msisdn),
    rec AS (
        INSERT INTO broadcast_recipients (broadcast_id, msisdn, state, mt_id)
        SELECT b.id, t.msisdn, CASE WHEN mt.id IS NULL THEN 'skipped' ELSE 'queued' END, mt.id
          FROM timed t LEFT JOIN mt ON mt.msisdn = t.msisdn
        RETURNING 1)
    SELECT count(*) INTO v_n FROM rec;

    v_state := CASE WHEN v_n < p_chunk THEN 'sending' ELSE 'resolving' END;
    UPDATE broadcasts x SET targeted = x.targeted + v_n, state = v_state,
           resolved_at = CASE WHEN v_state = 'sending' THEN v_now END
     WHERE x.id = b.id;
    broadcast_id := b.id;
    added := v_n;
    state := v_state;
    RETURN NEXT;
END $$;

-- Cancels a broadcast: nothing more is resolved and every outbox row not yet
-- claimed for submission is cancelled (rows already handed to an SMSC link
-- are not recalled). Returns the previous state (NULL: no such broadcast)
-- and how many queued messages were cancelled.
CREATE FUNCTION sg_broadcast_cancel(p_id bigint, OUT previous text, OUT cancelled int)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT b.state INTO previous FROM broadcasts b WHERE b.id = p_id FOR UPDATE;
    cancelled := 0;
    IF previous IS NULL THEN
        RETURN;
    END IF;
    IF previous IN ('scheduled', 'resolving', 'sending') THEN
        UPDATE broadcasts b SET state = 'cancelled', cancelled_at = now() WHERE b.id = p_id;
    END IF;
    WITH c AS (
        UPDATE mt_messages m SET state = 'cancelled', final_at = now()
         WHERE m.broadcast_id = p_id AND m.state = 'queued'
        RETURNING m.id),
    r AS (
        UPDATE broadcast_recipients r SET state = 'cancelled'
          FROM c WHERE r.broadcast_id = p_id AND r.mt_id = c.id
        RETURNING 1)
    SELECT count(*) INTO cancelled FROM c;
END $$;

-- Live counts of one broadcast. targeted: numbers resolved; queued: in the
-- outbox (waiting or being submitted); submitted: accepted by an SMSC
-- (including those delivered or failed since); delivered; failed: failed
-- or expired; cancelled; skipped: resolved but past end_at.
CREATE FUNCTION sg_broadcast_counts(p_id bigint)
RETURNS TABLE (id bigint, name text, state text, start_at timestamptz, end_at timestamptz, rate int,
               targeted int, queued bigint, submitted bigint, delivered bigint, failed bigint,
               cancelled bigint, skipped bigint)
LANGUAGE sql STABLE AS $$
    SELECT b.id, b.name, b.state, b.start_at, b.end_at, b.rate, b.targeted,
           coalesce(m.queued, 0), coalesce(m.submitted, 0), coalesce(m.delivered, 0),
           coalesce(m.failed, 0), coalesce(m.cancelled, 0),
           (SELECT count(*) FROM broadcast_recipients r WHERE r.broadcast_id = b.id AND r.state = 'skipped')
      FROM broadcasts b
      LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE x.state IN ('queued', 'submitting')) AS queued,
               count(*) FILTER (WHERE x.submitted_at IS NOT NULL) AS submitted,
               count(*) FILTER (WHERE x.state = 'delivered') AS delivered,
               count(*) FILTER (WHERE x.state IN ('failed', 'expired')) AS failed,
               count(*) FILTER (WHERE x.state = 'cancelled') AS cancelled
          FROM mt_messages x WHERE x.broadcast_id = b.id) m ON true
     WHERE b.id = p_id
$$;

-- ---------------------------------------------------------------------
-- Send-time guard for unsolicited traffic (broadcasts and reminders)
-- ---------------------------------------------------------------------

-- Given outbox rows the caller has claimed (locked FOR UPDATE, still
-- 'queued'), returns those that may be submitted now. Of the campaign rows
-- (kind broadcast or reminder): a number that has opted out since has its
-- rows cancelled; inside quiet hours the rows move to the end of the quiet
-- period; a number whose subscriber row another transaction holds is left
-- for the next claim (that lock makes the cap exact across instances); a
-- number that already got daily_cap campaign messages today (campaign time
-- zone; submitted or being submitted) has the extra rows moved to the next
-- allowed time tomorrow (expired instead when that is past expires_at).
-- Other rows pass untouched.
CREATE FUNCTION sg_bulk_guard(p_ids bigint[], p_now timestamptz DEFAULT NULL)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    cs campaign_settings;
    v_camp bigint[];
    v_ok bigint[];
    v_allowed timestamptz;
    v_day timestamptz;
    v_tomorrow timestamptz;
BEGIN
    IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
        RETURN coalesce(p_ids, '{}');
    END IF;
    SELECT * INTO cs FROM campaign_settings;
    v_camp := ARRAY(SELECT m.id FROM mt_messages m
                     WHERE m.id = ANY (p_ids) AND m.kind IN ('broadcast', 'reminder') AND m.state = 'queued');
    IF cardinality(v_camp) = 0 THEN
        RETURN p_ids;
    END IF;
    v_ok := ARRAY(SELECT x FROM unnest(p_ids) x WHERE x <> ALL (v_camp));

    -- opted out since it was queued
    WITH c AS (
        UPDATE mt_messages m SET state = 'cancelled', final_at = v_now
          FROM subscribers s
         WHERE m.id = ANY (v_camp) AND s.msisdn = m.msisdn AND s.opted_out
        RETURNING m.id)
    SELECT ARRAY(SELECT x FROM unnest(v_camp) x WHERE x NOT IN (SELECT id FROM c)) INTO v_camp;

    -- quiet hours
    v_allowed := sg_next_allowed(v_now, cs.timezone, cs.quiet_hours);
    IF v_allowed > v_now THEN
        UPDATE mt_messages m SET next_attempt_at = v_allowed WHERE m.id = ANY (v_camp);
        RETURN v_ok;
    END IF;

    -- serialise per number, then the daily cap
    v_day := sg_local_day_start(v_now, cs.timezone);
    v_tomorrow := sg_next_allowed((date_trunc('day', v_now AT TIME ZONE cs.timezone) + interval '1 day')
                                  AT TIME ZONE cs.timezone, cs.timezone, cs.quiet_hours);
    WITH locked AS (
        SELECT s.msisdn FROM subscribers s
         WHERE s.msisdn IN (SELECT m.msisdn FROM mt_messages m WHERE m.id = ANY (v_camp))
         ORDER BY s.msisdn FOR NO KEY UPDATE SKIP LOCKED),
    cand AS (
        SELECT m.id, m.msisdn, m.expires_at,
               row_number() OVER (PARTITION BY m.msisdn ORDER BY m.next_attempt_at, m.id) AS rn
          FROM mt_messages m
         WHERE m.id = ANY (v_camp)
           AND (m.msisdn IN (SELECT msisdn FROM locked)
                OR NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.msisdn = m.msisdn))),
    sent AS (
        SELECT d.msisdn, (SELECT count(*) FROM mt_messages x
                           WHERE x.msisdn = d.msisdn AND x.kind IN ('broadcast', 'reminder')
                             AND x.id <> ALL (v_camp)
                             AND (x.state = 'submitting' OR x.submitted_at >= v_day)) AS n
          FROM (SELECT DISTINCT msisdn FROM cand) d),
    judged AS (
        SELECT c.id, c.expires_at, cs.daily_cap = 0 OR c.rn + s.n <= cs.daily_cap AS ok
          FROM cand c JOIN sent s USING (msisdn)),
    deferred AS (
        UPDATE mt_messages m
           SET next_attempt_at = v_tomorrow,
               state = CASE WHEN j.expires_at < v_tomorrow THEN 'expired' ELSE 'queued' END,
               final_at = CASE WHEN j.expires_at < v_tomorrow THEN v_now END
          FROM judged j WHERE m.id = j.id AND NOT j.ok
        RETURNING 1)
    SELECT v_ok || ARRAY(SELECT j.id FROM judged j WHERE j.ok) INTO v_ok
      FROM (SELECT count(*) FROM deferred) force_deferred;
    RETURN v_ok;
END $$;

-- sg_mt_claim (sql/003_pipeline.sql) with the guard applied: claims due
-- queued rows of priority p_prio for p_owner (SKIP LOCKED), expires those
-- past expires_at, runs sg_bulk_guard and marks the rest 'submitting'.
-- Same result columns as sg_mt_claim; meant for priority 1.
CREATE FUNCTION sg_mt_claim_guarded(p_owner text, p_prio int, p_limit int)
RETURNS TABLE (id bigint, msisdn text, source text, text text, priority smallint,
               fold boolean, link text, ussd_session text, ussd_end boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
BEGIN
    v_ids := ARRAY(SELECT m.id FROM mt_messages m
                    WHERE m.state = 'queued' AND m.priority = p_prio AND m.next_attempt_at <= now()
                    ORDER BY m.next_attempt_at, m.id LIMIT p_limit FOR UPDATE SKIP LOCKED);
    UPDATE mt_messages m SET state = 'expired', final_at = now()
     WHERE m.id = ANY (v_ids) AND m.expires_at < now();
    v_ids := sg_bulk_guard(ARRAY(SELECT m.id FROM mt_messages m
                                  WHERE m.id = ANY (v_ids) AND m.state = 'queued'));
    RETURN QUERY
    UPDATE mt_messages m SET state = 'submitting', owner = p_owner, attempts = m.attempts + 1
     WHERE m.id = ANY (v_ids)
    RETURNING m.id, m.msisdn, m.source, m.text, m.priority, m.fold, m.link, m.ussd_session,
              m.ussd_end;
END $$;

-- ---------------------------------------------------------------------
-- Reminders (§3.4)
-- ---------------------------------------------------------------------

-- The reminder text template for a kind and language: the configured one
-- (campaign_settings.reminder_texts, from the content files) or a built-in
-- default. Placeholders: {skill} (name), {n} (skill number 1-5).
CREATE FUNCTION sg_reminder_template(p_kind text, p_lang text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif((SELECT reminder_texts->(CASE WHEN p_lang = 'en' THEN 'en' ELSE 'vi' END)->>p_kind
                              FROM campaign_settings), ''),
        CASE WHEN p_lang = 'en' THEN
            CASE p_kind
                WHEN 'unfinished' THEN 'You have not finished the quiz on {skill}. Send QUIZ {n} to 8079 to try again. Send STOP to stop these messages.'
                WHEN 'failed' THEN 'Ready to try the quiz on {skill} again? Send QUIZ {n} to 8079 for new questions. Send STOP to stop these messages.'
                ELSE 'Well done on your last skill! Next: {skill}. Send QUIZ {n} to 8079 to start. Send STOP to stop these messages.'
            END
        ELSE
            CASE p_kind
                WHEN 'unfinished' THEN 'Bạn chưa làm xong bài kiểm tra kỹ năng {skill}. Nhắn HOC {n} gửi 8079 để làm lại. Nhắn TUCHOI để ngừng nhận tin.'
                WHEN 'failed' THEN 'Bạn muốn thử lại bài kiểm tra kỹ năng {skill}? Nhắn HOC {n} gửi 8079 để làm với câu hỏi mới. Nhắn TUCHOI để ngừng nhận tin.'
                ELSE 'Chúc mừng bạn đã đạt kỹ năng trước! Tiếp theo: {skill}. Nhắn HOC {n} gửi 8079 để bắt đầu. Nhắn TUCHOI để ngừng nhận tin.'
            END
        END)
$$;

-- Is the reminder (kind, skill, anchor) still about something true now?
-- unfinished: the same quiz is still open since the anchor; failed: that
-- failure is the latest attempt and the skill is not passed; next: the
-- skill is still not attempted nor proficient.
CREATE FUNCTION sg_reminder_valid(p_msisdn text, p_skill text, p_kind text, p_anchor timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE p_kind
        WHEN 'unfinished' THEN EXISTS (
            SELECT 1 FROM subscribers s JOIN skills k ON k.code = p_skill
             WHERE s.msisdn = p_msisdn AND s.flow_state LIKE 'Q:' || k.position || ':%'
               AND s.flow_state_at = p_anchor)
        WHEN 'failed' THEN EXISTS (
            SELECT 1 FROM proficiency p
             WHERE p.msisdn = p_msisdn AND p.skill = p_skill AND p.quiz_failed_at = p_anchor
               AND p.quiz_passed_at IS NULL AND NOT p.proficient)
        ELSE NOT EXISTS (
            SELECT 1 FROM proficiency q
             WHERE q.msisdn = p_msisdn AND q.skill = p_skill
               AND (q.proficient OR q.best_quiz IS NOT NULL OR q.quiz_failed_at IS NOT NULL
                    OR q.quiz_started_at IS NOT NULL OR q.quiz_passed_at IS NOT NULL))
    END
$$;

-- Plans reminders: for each (number, skill, kind, anchor) whose reminder
-- falls due within p_horizon seconds of now, one 'pending' row with due_at
-- = anchor + delay moved out of the quiet hours (an anchor in the past
-- gives a due_at in the past: it is sent at the next dispatch, not
-- dropped). Kinds: unfinished (flow_state 'Q:<n>:..' since flow_state_at),
-- failed (quiz_failed_at, not passed), next (previous skill passed, this
-- one not attempted). Numbers opted out, or with reminder_max_per_skill
-- reminders already sent for the skill, get none; anchors older than
-- p_max_age seconds are ignored (old imports do not wake up, and each
-- planning pass is a bounded index range scan). Idempotent and safe from
-- several instances (unique fire key). Returns the rows created.
CREATE FUNCTION sg_reminders_plan(p_now timestamptz DEFAULT NULL, p_limit int DEFAULT 5000,
                                  p_horizon int DEFAULT 3600, p_max_age int DEFAULT 7776000)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    cs campaign_settings;
    v_until timestamptz;
    v_since timestamptz := coalesce(p_now, now()) - make_interval(secs => p_max_age);
    v_n int;
BEGIN
    SELECT * INTO cs FROM campaign_settings;
    IF cs.reminder_max_per_skill <= 0 THEN
        RETURN 0;
    END IF;
    v_until := v_now + make_interval(secs => p_horizon);
    WITH cand AS (
        SELECT s.msisdn, k.code AS skill, 'unfinished' AS kind, s.flow_state_at AS anchor,
               s.flow_state_at + make_interval(secs => cs.reminder_unfinished_delay) AS due
          FROM subscribers s
          JOIN skills k ON split_part(s.flow_state, ':', 2) = k.position::text
         WHERE s.flow_state LIKE 'Q:%' AND s.flow_state_at >= v_since AND NOT s.opted_out
           AND s.flow_state_at + make_interval(secs => cs.reminder_unfinished_delay) <= v_until
        UNION ALL
        SELECT p.msisdn, p.skill, 'failed', p.quiz_failed_at,
               p.quiz_failed_at + make_interval(secs => cs.reminder_failed_delay)
          FROM proficiency p JOIN subscribers s ON s.msisdn = p.msisdn AND NOT s.opted_out
         WHERE p.quiz_failed_at >= v_since AND p.quiz_passed_at IS NULL AND NOT p.proficient
           AND p.quiz_failed_at + make_interval(secs => cs.reminder_failed_delay) <= v_until
        UNION ALL
        SELECT p.msisdn, k2.code, 'next', p.quiz_passed_at,
               p.quiz_passed_at + make_interval(secs => cs.reminder_next_delay)
          FROM proficiency p
          JOIN subscribers s ON s.msisdn = p.msisdn AND NOT s.opted_out
          JOIN skills k1 ON k1.code = p.skill
          JOIN skills k2 ON k2.position = k1.position + 1
         WHERE p.quiz_passed_at >= v_since
           AND p.quiz_passed_at + make_interval(secs => cs.reminder_next_delay) <= v_until
           AND sg_reminder_valid(p.msisdn, k2.code, 'next', p.quiz_passed_at)),
    ins AS (
        INSERT INTO reminders (msisdn, skill, kind, anchor_at, due_at)
        SELECT c.msisdn, c.skill, c.kind, c.anchor,
               sg_next_allowed(c.due, cs.timezone, cs.quiet_hours)
          FROM cand c
         WHERE NOT EXISTS (SELECT 1 FROM reminders r
                            WHERE r.msisdn = c.msisdn AND r.skill = c.skill AND r.kind = c.kind
                              AND r.anchor_at = c.anchor)
           AND (SELECT count(*) FROM reminders r
                 WHERE r.msisdn = c.msisdn AND r.skill = c.skill AND r.state = 'sent')
               < cs.reminder_max_per_skill
         LIMIT p_limit
        ON CONFLICT DO NOTHING
        RETURNING 1)
    SELECT count(*) INTO v_n FROM ins;
    RETURN v_n;
END $$;

-- Sends due reminders (due_at <= now; FOR UPDATE SKIP LOCKED, at most
-- p_limit): nothing inside quiet hours. Each is checked again: opted out
-- -> skipped; reminder_max_per_skill reached -> skipped; the field it was
-- about changed (quiz finished, passed, retaken...) -> cancelled; another
-- flow in progress (not the unfinished quiz it is about) -> due_at moved
-- to when that flow ends or in an hour; a reminder already sent to the
-- number today (campaign time zone) -> moved to the next allowed time
-- tomorrow. Otherwise an outbox row (kind reminder, priority 1) is queued
-- at now and the reminder is 'sent'. Returns the messages queued.
CREATE FUNCTION sg_reminders_dispatch(p_now timestamptz DEFAULT NULL, p_limit int DEFAULT 1000)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    cs campaign_settings;
    r record;
    v_day timestamptz;
    v_tomorrow timestamptz;
    v_mt bigint;
    v_text text;
    v_n int := 0;
BEGIN
    SELECT * INTO cs FROM campaign_settings;
    IF sg_next_allowed(v_now, cs.timezone, cs.quiet_hours) > v_now THEN
        RETURN 0;
    END IF;
    v_day := sg_local_day_start(v_now, cs.timezone);
    v_tomorrow := sg_next_allowed((date_trunc('day', v_now AT TIME ZONE cs.timezone) + interval '1 day')
                                  AT TIME ZONE cs.timezone, cs.timezone, cs.quiet_hours);
    FOR r IN
        SELECT x.id, x.msisdn, x.skill, x.kind, x.anchor_at
          FROM reminders x
         WHERE x.state = 'pending' AND x.due_at <= v_now
         ORDER BY x.due_at, x.id LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    LOOP
        -- one dispatcher per number at a time (the per-day rule across instances)
        PERFORM 1 FROM subscribers s WHERE s.msisdn = r.msisdn FOR NO KEY UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            IF NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.msisdn = r.msisdn) THEN
                UPDATE reminders SET state = 'cancelled', reason = 'no subscriber' WHERE id = r.id;
            END IF;
            CONTINUE;
        END IF;
        IF (SELECT s.opted_out FROM subscribers s WHERE s.msisdn = r.msisdn) THEN
            UPDATE reminders SET state = 'skipped', reason = 'opted out' WHERE id = r.id;
        ELSIF (SELECT count(*) FROM reminders y WHERE y.msisdn = r.msisdn AND y.skill = r.skill
                  AND y.state = 'sent') >= cs.reminder_max_per_skill THEN
            UPDATE reminders SET state = 'skipped', reason = 'max per skill' WHERE id = r.id;
        ELSIF NOT sg_reminder_valid(r.msisdn, r.skill, r.kind, r.anchor_at) THEN
            UPDATE reminders SET state = 'cancelled', reason = 'changed' WHERE id = r.id;
        ELSIF r.kind <> 'unfinished' AND EXISTS (
                SELECT 1 FROM subscribers s WHERE s.msisdn = r.msisdn AND s.flow_state <> ''
                   AND s.flow_state_at > v_now - make_interval(secs => cs.flow_idle_timeout)) THEN
            UPDATE reminders SET due_at = sg_next_allowed(least(
                       (SELECT s.flow_state_at FROM subscribers s WHERE s.msisdn = r.msisdn)
                           + make_interval(secs => cs.flow_idle_timeout),
                       v_now + interval '1 hour'), cs.timezone, cs.quiet_hours)
             WHERE id = r.id;
        ELSIF EXISTS (SELECT 1 FROM reminders y WHERE y.msisdn = r.msisdn AND y.state = 'sent'
                         AND y.sent_at >= v_day) THEN
            UPDATE reminders SET due_at = v_tomorrow WHERE id = r.id;
        ELSE
            SELECT replace(replace(sg_reminder_template(r.kind, s.language), '{skill}',
                                   CASE WHEN s.language = 'en' THEN k.name_en ELSE k.name_vi END),
                           '{n}', k.position::text)
              INTO v_text
              FROM subscribers s, skills k WHERE s.msisdn = r.msisdn AND k.code = r.skill;
            INSERT INTO mt_messages (msisdn, text, kind, priority, state, reminder_id,
                                     next_attempt_at, expires_at)
            VALUES (r.msisdn, v_text, 'reminder', 1, 'queued', r.id, v_now,
                    v_now + make_interval(secs => cs.mt_validity))
            RETURNING id INTO v_mt;
            UPDATE reminders SET state = 'sent', sent_at = v_now, mt_id = v_mt WHERE id = r.id;
            v_n := v_n + 1;
        END IF;
    END LOOP;
    RETURN v_n;
END $$;
