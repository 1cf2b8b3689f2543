-- Staff interfaces (§4.1, §4.3): household coverage reports and the batched
-- household import, shared by the HTTP API and skillctl.

-- Bit of a skill in a coverage mask (public_services = 1 ... platforms = 16).
CREATE FUNCTION sg_skill_bit(p_skill text) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_skill WHEN 'public_services' THEN 1 WHEN 'shopping' THEN 2 WHEN 'payment' THEN 4
                        WHEN 'safety' THEN 8 WHEN 'platforms' THEN 16 ELSE 0 END
$$;

-- Coverage per household, kept current by triggers so that the report reads
-- one small row per household instead of every proficiency row (§7: 1M
-- phones / 300k households in <= 1 s). A household has a row here only when
-- some member is proficient in some skill: mask has bit sg_skill_bit(skill)
-- set when a member is proficient in that skill, covered is true when one
-- member is proficient in all five.
CREATE TABLE coverage_households (
    household_id bigint PRIMARY KEY REFERENCES households (id) ON DELETE CASCADE,
    mask         int NOT NULL,
    covered      boolean NOT NULL
);

-- Recomputes one household's row from the stored proficient flags. The
-- household row is locked first so that concurrent changes to two members
-- serialise (each recomputation then sees the other's commit).
CREATE FUNCTION sg_coverage_refresh(p_household bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_mask int;
    v_cov boolean;
BEGIN
    IF p_household IS NULL THEN
        RETURN;
    END IF;
    PERFORM 1 FROM households WHERE id = p_household FOR NO KEY UPDATE;
    SELECT bit_or(m.mask), bool_or(m.mask = 31) INTO v_mask, v_cov
      FROM (SELECT bit_or(sg_skill_bit(p.skill)) AS mask
              FROM subscribers s JOIN proficiency p ON p.msisdn = s.msisdn AND p.proficient
             WHERE s.household_id = p_household GROUP BY s.msisdn) m;
    IF coalesce(v_mask, 0) = 0 THEN
        DELETE FROM coverage_households WHERE household_id = p_household;
    ELSE
        INSERT INTO coverage_households (household_id, mask, covered)
        VALUES (p_household, v_mask, v_cov)
        ON CONFLICT (household_id) DO UPDATE SET mask = excluded.mask, covered = excluded.covered
        WHERE (coverage_households.mask, coverage_households.covered)
              IS DISTINCT FROM (excluded.mask, excluded.covered);
    END IF;
END $$;

-- A phone's proficient flag changed: refresh its household.
CREATE FUNCTION sg_coverage_proficiency_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sg_coverage_refresh(s.household_id)
       FROM subscribers s
      WHERE s.msisdn = CASE WHEN TG_OP = 'DELETE' THEN OLD.msisdn ELSE NEW.msisdn END
        AND s.household_id IS NOT NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER proficiency_coverage_ins AFTER INSERT ON proficiency
    FOR EACH ROW WHEN (NEW.proficient) EXECUTE FUNCTION sg_coverage_proficiency_trg();
CREATE TRIGGER proficiency_coverage_upd AFTER UPDATE OF proficient ON proficiency
    FOR EACH ROW WHEN (OLD.proficient IS DISTINCT FROM NEW.proficient)
    EXECUTE FUNCTION sg_coverage_proficiency_trg();
CREATE TRIGGER proficiency_coverage_del AFTER DELETE ON proficiency
    FOR EACH ROW WHEN (OLD.proficient) EXECUTE FUNCTION sg_coverage_proficiency_trg();

-- A phone joined, left or changed household: refresh both households, but
-- only when the phone is proficient in something (most new phones are not,
-- which keeps large imports cheap).
CREATE FUNCTION sg_coverage_subscriber_trg() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_msisdn text := CASE WHEN TG_OP = 'DELETE' THEN OLD.msisdn ELSE NEW.msisdn END;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM proficiency p WHERE p.msisdn = v_msisdn AND p.proficient) THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        PERFORM sg_coverage_refresh(OLD.household_id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM sg_coverage_refresh(NEW.household_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER subscribers_coverage_ins AFTER INSERT ON subscribers
    FOR EACH ROW WHEN (NEW.household_id IS NOT NULL) EXECUTE FUNCTION sg_coverage_subscriber_trg();
CREATE TRIGGER subscribers_coverage_upd AFTER UPDATE OF household_id ON subscribers
    FOR EACH ROW WHEN (OLD.household_id IS DISTINCT FROM NEW.household_id)
    EXECUTE FUNCTION sg_coverage_subscriber_trg();
CREATE TRIGGER subscribers_coverage_del AFTER DELETE ON subscribers
    FOR EACH ROW WHEN (OLD.household_id IS NOT NULL) EXECUTE FUNCTION sg_coverage_subscriber_trg();

-- Existing data (the migration may run on a populated database).
INSERT INTO coverage_households (household_id, mask, covered)
SELECT m.household_id, bit_or(m.mask), bool_or(m.mask = 31)
  FROM (SELECT s.household_id, bit_or(sg_skill_bit(p.skill)) AS mask
          FROM subscribers s JOIN proficiency p ON p.msisdn = s.msisdn AND p.proficient
         WHERE s.household_id IS NOT NULL GROUP BY s.household_id, s.msisdn) m
 GROUP BY m.household_id;

-- Coverage of the localities of one level: defined in 011_coverage_one_pass.sql.
-- Declared here (no rows) because sg_coverage_json below is built on it.
CREATE FUNCTION sg_coverage(p_level text, p_parent text DEFAULT NULL)
RETURNS TABLE (code text, name text, households bigint, covered bigint, covered_pct numeric,
               public_services bigint, shopping bigint, payment bigint, safety bigint,
               platforms bigint, public_services_pct numeric, shopping_pct numeric,
               payment_pct numeric, safety_pct numeric, platforms_pct numeric)
LANGUAGE sql STABLE AS $$
    SELECT NULL::text, NULL::text, 0::bigint, 0::bigint, 0::numeric, 0::bigint, 0::bigint,
           0::bigint, 0::bigint, 0::bigint, 0::numeric, 0::numeric, 0::numeric, 0::numeric,
           0::numeric
     WHERE false
$$;

-- The same report as one JSON array (what the HTTP API returns).
CREATE FUNCTION sg_coverage_json(p_level text, p_parent text DEFAULT NULL)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT coalesce(json_agg(json_build_object(
               'code', c.code, 'name', c.name, 'households', c.households,
               'covered', c.covered, 'covered_pct', coalesce(c.covered_pct, 0),
               'skills', json_build_object(
                   'public_services', json_build_object('covered', c.public_services,
                                                        'pct', coalesce(c.public_services_pct, 0)),
                   'shopping', json_build_object('covered', c.shopping,
                                                 'pct', coalesce(c.shopping_pct, 0)),
                   'payment', json_build_object('covered', c.payment,
                                                'pct', coalesce(c.payment_pct, 0)),
                   'safety', json_build_object('covered', c.safety,
                                               'pct', coalesce(c.safety_pct, 0)),
                   'platforms', json_build_object('covered', c.platforms,
                                                  'pct', coalesce(c.platforms_pct, 0))))
               ORDER BY c.code), '[]'::json)
      FROM sg_coverage(p_level, p_parent) c
$$;

-- Imports validated household CSV rows (parsed and checked by
-- core/household_csv.c) in one statement. Rows are rejected, with their line,
-- when the commune is not under that district and province, when a household
-- code appears with two communes (the first line wins), or when a phone is
-- listed twice (the first line wins). Households are upserted by code
-- (commune and village follow the file), phones join their household with
-- joined_via 'import' (a phone already in that household keeps how it
-- joined; a new phone gets the file's language). Re-importing the same file
-- changes nothing. Returns the counts and the rejected lines.
CREATE FUNCTION sg_households_import(p_line int[], p_code text[], p_province text[],
                                     p_district text[], p_commune text[], p_village text[],
                                     p_msisdn text[], p_language text[],
                                     OUT imported int, OUT households int, OUT phones int,
                                     OUT err_lines int[], OUT err_texts text[])
LANGUAGE sql AS $$
    WITH r AS (
        SELECT t.*, EXISTS (
                   SELECT 1 FROM localities c JOIN localities d ON d.code = c.parent_code
                    WHERE c.code = t.commune AND c.level = 'commune'
                      AND d.code = t.district AND d.parent_code = t.province) AS loc_ok
          FROM unnest(p_line, p_code, p_province, p_district, p_commune, p_village, p_msisdn,
                      p_language) AS t(line, code, province, district, commune, village, msisdn,
                                       language)),
    r2 AS (
        SELECT r.*,
               first_value(r.commune) OVER (PARTITION BY r.code ORDER BY r.line) AS hh_commune,
               first_value(r.line) OVER (PARTITION BY r.code ORDER BY r.line) AS hh_line,
               CASE WHEN r.msisdn = '' THEN r.line
                    ELSE first_value(r.line) OVER (PARTITION BY nullif(r.msisdn, '') ORDER BY r.line)
               END AS ph_line
          FROM r WHERE r.loc_ok),
    errs AS (
        SELECT r.line, format('commune %s is not in district %s of province %s',
                              r.commune, r.district, r.province) AS err
          FROM r WHERE NOT r.loc_ok
        UNION ALL
        SELECT r2.line, format('household %s is already on line %s with commune %s',
                               r2.code, r2.hh_line, r2.hh_commune)
          FROM r2 WHERE r2.commune <> r2.hh_commune
        UNION ALL
        SELECT r2.line, format('phone already listed on line %s', r2.ph_line)
          FROM r2 WHERE r2.commune = r2.hh_commune AND r2.ph_line <> r2.line),
    v AS (
        SELECT * FROM r2 WHERE r2.commune = r2.hh_commune AND r2.ph_line = r2.line),
    hh AS (
        INSERT INTO households AS h (code, commune_code, village)
        SELECT DISTINCT ON (v.code) v.code, v.commune, v.village FROM v ORDER BY v.code, v.line
        ON CONFLICT (code) DO UPDATE SET commune_code = excluded.commune_code,
                                         village = excluded.village
        RETURNING h.id, h.code),
    ph AS (
        INSERT INTO subscribers AS s (msisdn, language, household_id, joined_via)
        SELECT v.msisdn, v.language, hh.id, 'import' FROM v JOIN hh ON hh.code = v.code
         WHERE v.msisdn <> ''
        ON CONFLICT (msisdn) DO UPDATE
            SET household_id = excluded.household_id,
                joined_via = CASE WHEN s.household_id IS NOT DISTINCT FROM excluded.household_id
                                  THEN coalesce(s.joined_via, 'import') ELSE 'import' END
        RETURNING 1)
    SELECT (SELECT count(*)::int FROM v), (SELECT count(*)::int FROM hh),
           (SELECT count(*)::int FROM ph),
           coalesce((SELECT array_agg(e.line ORDER BY e.line) FROM errs e), '{}'),
           coalesce((SELECT array_agg(e.err ORDER BY e.line) FROM errs e), '{}')
$$;
