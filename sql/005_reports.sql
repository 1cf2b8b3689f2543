-- Staff interfaces (§4.1, §4.3): household coverage reports and the batched
-- household import, shared by the HTTP API and skillctl.

-- Bit of a skill in a coverage mask (public_services = 1 ... platforms = 16).
CREATE FUNCTION sg_skill_bit(p_skill text) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_skill WHEN 'public_services' THEN 1 WHEN 'shopping' THEN 2 WHEN 'payment' THEN 4
                        WHEN 'safety' THEN 8 WHEN 'platforms' THEN 16 ELSE 0 END
$$;

-- Proficient rows only, with the phone first: the coverage report reads
-- just these (index-only when the visibility map allows).
CREATE INDEX IF NOT EXISTS proficiency_proficient ON proficiency (msisdn, skill) WHERE proficient;

-- Coverage of the localities of one level (optionally only the children of
-- p_parent): households, households covered (some phone proficient in all
-- five skills), covered for each skill (some member proficient in it), and
-- the percentages. Every locality of the level is listed, with zeros when it
-- has no households. One pass over the proficient rows, aggregated once per
-- (household, phone) and once per household.
CREATE FUNCTION sg_coverage(p_level text, p_parent text DEFAULT NULL)
RETURNS TABLE (code text, name text, households bigint, covered bigint, covered_pct numeric,
               public_services bigint, shopping bigint, payment bigint, safety bigint,
               platforms bigint, public_services_pct numeric, shopping_pct numeric,
               payment_pct numeric, safety_pct numeric, platforms_pct numeric)
LANGUAGE sql STABLE AS $$
    WITH area AS (
        SELECT l.code, l.name FROM localities l
         WHERE l.level = p_level AND (p_parent IS NULL OR p_parent = '' OR l.parent_code = p_parent)),
    comm AS (
        SELECT c.code AS commune, a.code AS area
          FROM localities c
          LEFT JOIN localities d ON d.code = c.parent_code
          JOIN area a ON a.code = CASE p_level WHEN 'commune' THEN c.code
                                               WHEN 'district' THEN c.parent_code
                                               ELSE d.parent_code END
         WHERE c.level = 'commune'),
    hh AS (
        SELECT h.id, cm.area FROM households h JOIN comm cm ON cm.commune = h.commune_code),
    ph AS (
        SELECT s.household_id, bit_or(sg_skill_bit(p.skill)) AS mask
          FROM hh
          JOIN subscribers s ON s.household_id = hh.id
          JOIN proficiency p ON p.msisdn = s.msisdn AND p.proficient
         GROUP BY s.household_id, s.msisdn),
    hm AS (
        SELECT ph.household_id, bit_or(ph.mask) AS anymask, bool_or(ph.mask = 31) AS cov
          FROM ph GROUP BY ph.household_id),
    agg AS (
        SELECT a.code, a.name, count(hh.id) AS n,
               count(*) FILTER (WHERE hm.cov) AS cov,
               count(*) FILTER (WHERE hm.anymask & 1 <> 0) AS s1,
               count(*) FILTER (WHERE hm.anymask & 2 <> 0) AS s2,
               count(*) FILTER (WHERE hm.anymask & 4 <> 0) AS s3,
               count(*) FILTER (WHERE hm.anymask & 8 <> 0) AS s4,
               count(*) FILTER (WHERE hm.anymask & 16 <> 0) AS s5
          FROM area a
          LEFT JOIN hh ON hh.area = a.code
          LEFT JOIN hm ON hm.household_id = hh.id
         GROUP BY a.code, a.name)
    SELECT code, name, n, cov, round(100.0 * cov / nullif(n, 0), 1),
           s1, s2, s3, s4, s5,
           round(100.0 * s1 / nullif(n, 0), 1), round(100.0 * s2 / nullif(n, 0), 1),
           round(100.0 * s3 / nullif(n, 0), 1), round(100.0 * s4 / nullif(n, 0), 1),
           round(100.0 * s5 / nullif(n, 0), 1)
      FROM agg ORDER BY code
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
