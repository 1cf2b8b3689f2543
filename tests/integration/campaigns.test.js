'use strict';
// Campaigns (issue 8): quiet hours, reminders and broadcasts, and several
// instances on one database. Pain points 14 and 15 of the field notes.
//
// The SQL functions of sql/004_campaigns.sql take "now" as a parameter, so
// the schedule edge cases run against the database with a controlled clock
// (first group, no daemon). The second group runs real daemons against the
// SMSC simulator: cancel mid-broadcast, STOP mid-broadcast, and two
// instances sending one 10,000-recipient broadcast.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');

const TZ = 'Asia/Ho_Chi_Minh';

// Local wall-clock text of a timestamptz column, whatever the session TimeZone.
const LOCAL = (col) => `to_char(${col} AT TIME ZONE '${TZ}', 'YYYY-MM-DD HH24:MI:SS.MS')`;

async function configure(env, o) {
  await env.sql('SELECT sg_campaign_configure($1::jsonb)', [JSON.stringify({
    timezone: TZ, quiet_hours: '21:00-07:00', daily_cap: 1, mt_validity: 86400, default_rate: 0,
    reminder_max_per_skill: 3, reminder_unfinished_delay: 86400, reminder_failed_delay: 259200,
    reminder_next_delay: 86400, flow_idle_timeout: 86400, ...o,
  })]);
}

async function addSubscribers(env, from, n, extra = {}) {
  await env.sql(
    `INSERT INTO subscribers (msisdn, language, household_id)
     SELECT ($1::bigint + g)::text, $3, $4 FROM generate_series(0, $2 - 1) g`,
    [from, n, extra.language || 'vi', extra.household || null]);
}

async function household(env, code, commune) {
  const [r] = await env.sql(
    'INSERT INTO households (code, commune_code) VALUES ($1, $2) RETURNING id', [code, commune]);
  return r.id;
}

describe('campaigns in the database (controlled clock)', () => {
  let env;
  before(async () => {
    env = await h.start({ daemon: false });
    await configure(env, {});
  });
  after(async () => { if (env) await env.stop(); });

  it('sg_next_allowed rolls quiet hours over to 07:00 local, whatever the server TimeZone', async () => {
    for (const serverTz of ['America/Los_Angeles', 'UTC', 'Asia/Tokyo']) {
      await env.sql(`SET TimeZone = '${serverTz}'`);
      const cases = [
        ['2026-10-01T22:30:00+07:00', '21:00-07:00', '2026-10-02 07:00:00.000'],
        ['2026-10-01T21:00:00+07:00', '21:00-07:00', '2026-10-02 07:00:00.000'],
        ['2026-10-02T03:15:00+07:00', '21:00-07:00', '2026-10-02 07:00:00.000'],
        ['2026-10-02T06:59:59+07:00', '21:00-07:00', '2026-10-02 07:00:00.000'],
        ['2026-10-02T07:00:00+07:00', '21:00-07:00', '2026-10-02 07:00:00.000'],
        ['2026-10-02T12:00:00+07:00', '21:00-07:00', '2026-10-02 12:00:00.000'],
        ['2026-10-02T20:59:00+07:00', '21:00-07:00', '2026-10-02 20:59:00.000'],
        ['2026-10-02T12:10:00+07:00', '12:00-13:30', '2026-10-02 13:30:00.000'],
        ['2026-10-02T23:10:00+07:00', '', '2026-10-02 23:10:00.000'],
        // a UTC instant that is already inside the local night
        ['2026-10-01T15:30:00Z', '21:00-07:00', '2026-10-02 07:00:00.000'],
      ];
      for (const [ts, quiet, want] of cases) {
        const [r] = await env.sql(`SELECT ${LOCAL('sg_next_allowed($1, $2, $3)')} AS t`, [ts, TZ, quiet]);
        assert.equal(r.t, want, `${ts} with quiet ${quiet} (server ${serverTz})`);
      }
    }
    await env.sql('SET TimeZone = \'UTC\'');
    await assert.rejects(env.sql('SELECT sg_next_allowed(now(), $1, $2)', [TZ, '9pm-7am']), /HH:MM-HH:MM/);
  });

  it('a broadcast starting in quiet hours is queued from 07:00, spaced by its rate', async () => {
    const hh = await household(env, 'QH1', '00688');
    await addSubscribers(env, 84930000000, 3, { household: hh });
    const [{ id }] = await env.sql(`SELECT sg_broadcast_create($1::jsonb) AS id`, [JSON.stringify({
      name: 'night', text: { vi: 'Chào hộ {household}', en: 'Hi {household}' },
      segment: { commune: '00688' }, start_at: '2030-01-10T22:00', rate: 2 })]);
    // not due before its start
    let steps = await env.sql(`SELECT * FROM sg_broadcast_step('2030-01-10T21:59:00+07:00', 100)`);
    assert.equal(steps.length, 0);
    steps = await env.sql(`SELECT * FROM sg_broadcast_step('2030-01-10T22:00:05+07:00', 100)`);
    assert.deepEqual(steps.map((s) => [Number(s.broadcast_id), s.added, s.state]), [[Number(id), 3, 'sending']]);
    const rows = await env.sql(
      `SELECT msisdn, text, ${LOCAL('next_attempt_at')} AS at, priority, kind FROM mt_messages
        WHERE broadcast_id = $1 ORDER BY msisdn`, [id]);
    assert.deepEqual(rows.map((r) => r.at),
      ['2030-01-11 07:00:00.000', '2030-01-11 07:00:00.500', '2030-01-11 07:00:01.000']);
    assert.ok(rows.every((r) => r.text === 'Chào hộ QH1' && r.priority === 1 && r.kind === 'broadcast'));
    const [c] = await env.sql('SELECT * FROM sg_broadcast_counts($1)', [id]);
    assert.equal(c.targeted, 3);
    assert.equal(Number(c.queued), 3);
  });

  it('the rate spacing pauses over the night instead of piling up at 07:00', async () => {
    const [r] = await env.sql(
      `SELECT ${LOCAL("sg_add_allowed('2030-01-10T20:59:00+07:00', 120, $1, '21:00-07:00')")} AS t`, [TZ]);
    assert.equal(r.t, '2030-01-11 07:01:00.000');
  });

  it('reminders: offset 0 fires at once, an anchor in the past fires at the next dispatch', async () => {
    await configure(env, { reminder_unfinished_delay: 0, reminder_failed_delay: 259200 });
    const now = '2030-02-01T10:00:00+07:00';
    await env.sql(`INSERT INTO subscribers (msisdn, language, flow_state, flow_state_at)
                   VALUES ('84940000001', 'vi', 'Q:2:a1,a2,a3:1:0:0', $1)`, [now]);
    await env.sql(`INSERT INTO subscribers (msisdn, language) VALUES ('84940000002', 'en')`);
    await env.sql(`INSERT INTO proficiency (msisdn, skill, best_quiz, quiz_failed_at)
                   VALUES ('84940000002', 'safety', 2, '2029-12-01T10:00:00+07:00')`);
    assert.equal(await plan(env, now), 2);
    assert.equal(await plan(env, now), 0, 'planning is idempotent');
    const rem = await env.sql(`SELECT msisdn, kind, skill, ${LOCAL('due_at')} AS due FROM reminders
                                WHERE msisdn LIKE '8494%' ORDER BY msisdn`);
    assert.deepEqual(rem.map((r) => [r.msisdn, r.kind, r.skill, r.due]), [
      ['84940000001', 'unfinished', 'shopping', '2030-02-01 10:00:00.000'],
      ['84940000002', 'failed', 'safety', '2029-12-04 10:00:00.000'],
    ]);
    assert.equal(await dispatch(env, now), 2);
    const mts = await env.sql(`SELECT msisdn, text, kind, priority FROM mt_messages
                                WHERE msisdn LIKE '8494%' ORDER BY msisdn`);
    assert.equal(mts.length, 2);
    assert.match(mts[0].text, /HOC 2/);
    assert.match(mts[1].text, /QUIZ 4/);
    assert.ok(mts.every((m) => m.kind === 'reminder' && m.priority === 1));
    assert.equal(await dispatch(env, now), 0, 'each fire is sent once');
  });

  it('reminders: a field changed after scheduling cancels the old fire and plans the new one', async () => {
    await configure(env, { reminder_failed_delay: 600 });
    const t0 = '2030-03-01T09:00:00+07:00';
    await env.sql(`INSERT INTO subscribers (msisdn) VALUES ('84950000001'), ('84950000002')`);
    await env.sql(`INSERT INTO proficiency (msisdn, skill, best_quiz, quiz_failed_at)
                   VALUES ('84950000001', 'payment', 2, $1), ('84950000002', 'payment', 2, $1)`, [t0]);
    assert.equal(await plan(env, t0), 2);
    // 1 passes the quiz before the reminder is due; 2 fails again later
    await env.sql(`UPDATE proficiency SET quiz_passed_at = '2030-03-01T09:05:00+07:00', best_quiz = 5
                    WHERE msisdn = '84950000001'`);
    await env.sql(`UPDATE proficiency SET quiz_failed_at = '2030-03-01T09:06:00+07:00'
                    WHERE msisdn = '84950000002'`);
    assert.equal(await plan(env, '2030-03-01T09:07:00+07:00'), 1, 'the new failure is a new fire');
    assert.equal(await dispatch(env, '2030-03-01T09:11:00+07:00'), 0);
    assert.equal(await dispatch(env, '2030-03-01T09:16:00+07:00'), 1);
    const rem = await env.sql(`SELECT msisdn, state, reason, ${LOCAL('anchor_at')} AS anchor FROM reminders
                                WHERE msisdn LIKE '8495%' ORDER BY msisdn, id`);
    assert.deepEqual(rem.map((r) => [r.msisdn, r.state, r.reason]), [
      ['84950000001', 'cancelled', 'changed'],
      ['84950000002', 'cancelled', 'changed'],
      ['84950000002', 'sent', null],
    ]);
  });

  it('reminders: open quizzes are found by quiz_open, which an answer leaves alone (its update can be HOT)', async () => {
    await configure(env, { reminder_unfinished_delay: 600 });
    const t0 = '2030-04-01T09:00:00+07:00';
    await env.sql(`INSERT INTO subscribers (msisdn, flow_state, flow_state_at) VALUES
                   ('84931000001', 'Q:3:a1,a2:1:0:0', $1), ('84931000002', 'Q:4:b1,b2:1:0:0', $1),
                   ('84931000003', 'M:1', $1)`, [t0]);
    const open = async () => (await env.sql(
      "SELECT quiz_open FROM subscribers WHERE msisdn LIKE '84931%' ORDER BY msisdn")).map((r) => r.quiz_open);
    assert.deepEqual(await open(), [true, true, false]);
    // 1 answers a question (what an answer's update writes), 2 finishes its quiz
    await env.sql(`UPDATE subscribers SET flow_state = 'Q:3:a1,a2:2:1:0', flow_state_at = '2030-04-01T09:02:00+07:00',
                   last_mo_at = '2030-04-01T09:02:00+07:00' WHERE msisdn = '84931000001'`);
    await env.sql(`UPDATE subscribers SET flow_state = '', flow_state_at = '2030-04-01T09:02:00+07:00'
                    WHERE msisdn = '84931000002'`);
    assert.deepEqual(await open(), [true, false, false]);
    try {
      await plan(env, '2030-04-01T09:05:00+07:00');
      const rem = await env.sql(`SELECT msisdn, kind, skill, ${LOCAL('due_at')} AS due FROM reminders
                                  WHERE msisdn LIKE '84931%'`);
      assert.deepEqual(rem.map((r) => [r.msisdn, r.kind, r.skill, r.due]),
        [['84931000001', 'unfinished', 'payment', '2030-04-01 09:12:00.000']],
        'the open quiz; not the finished one, not the menu');
    } finally {
      // the other tests plan and dispatch on this database too
      await env.sql("DELETE FROM reminders WHERE msisdn LIKE '84931%'");
      await env.sql("DELETE FROM subscribers WHERE msisdn LIKE '84931%'");
    }
    // no index of subscribers names a column an answer changes (flow_state, flow_state_at,
    // last_mo_at), so PostgreSQL can rewrite the row in place without new index entries
    const idx = await env.sql(`SELECT indexname FROM pg_indexes WHERE tablename = 'subscribers'
                                AND indexdef ~ '(flow_state|last_mo_at)'`);
    assert.deepEqual(idx, []);
  });

  it('subscribers: numbers inserted together leave room on their pages for an answer\'s update (HOT, 022)', async () => {
    // 400 numbers in one statement, as a batch of new residents arrives, fill
    // pages in a row; then every fourth answers (flow_state, flow_state_at,
    // last_mo_at), all in one transaction so that no dead version can be
    // pruned to make room. Packed full, none of those updates stays on its page.
    const hotUpdates = async () => (await env.sql(
      "SELECT pg_stat_get_xact_tuples_hot_updated('subscribers'::regclass)::int AS n"))[0].n;
    await env.sql('BEGIN');
    try {
      // (the count can include earlier statements' not yet reported: read it before)
      const hot0 = await hotUpdates();
      await env.sql(`INSERT INTO subscribers (msisdn, flow_state, flow_state_at, last_mo_at)
                     SELECT '84932' || lpad(g::text, 6, '0'), 'Q:1:dvc01,dvc02,dvc03:1:0:0', now(), now()
                       FROM generate_series(1, 400) g`);
      const upd = await env.sql(`UPDATE subscribers SET flow_state = 'Q:1:dvc01,dvc02,dvc03:2:1:0',
                                        flow_state_at = now(), last_mo_at = now()
                                  WHERE msisdn LIKE '84932%' AND right(msisdn, 6)::int % 4 = 0 RETURNING 1`);
      assert.equal(upd.length, 100);
      assert.equal(await hotUpdates() - hot0, 100, 'every answer rewrote its row in place');
    } finally {
      await env.sql('ROLLBACK');
    }
  });

  it('reminders: one per number per day, three per skill, none to opted-out numbers or mid-flow', async () => {
    await configure(env, { reminder_failed_delay: 0, reminder_next_delay: 0, flow_idle_timeout: 600 });
    await env.sql(`INSERT INTO subscribers (msisdn) VALUES ('84960000001'), ('84960000002'), ('84960000003')`);
    await env.sql(`UPDATE subscribers SET opted_out = true WHERE msisdn = '84960000002'`);
    await env.sql(`UPDATE subscribers SET flow_state = 'S:1:0', flow_state_at = '2030-04-01T08:59:00+07:00'
                    WHERE msisdn = '84960000003'`);
    // 1 passed skill 1 (-> next: skill 2) and failed skill 3: two reminders due the same day
    await env.sql(`INSERT INTO proficiency (msisdn, skill, quiz_passed_at, best_quiz, proficient, quiz_failed_at)
                   VALUES ('84960000001', 'public_services', '2030-04-01T08:00:00+07:00', 5, true, NULL),
                          ('84960000001', 'payment', NULL, 1, false, '2030-04-01T08:30:00+07:00'),
                          ('84960000002', 'payment', NULL, 1, false, '2030-04-01T08:30:00+07:00'),
                          ('84960000003', 'payment', NULL, 1, false, '2030-04-01T08:30:00+07:00')`);
    const sent8496 = async () => (await env.sql(
      `SELECT count(*)::int AS n FROM reminders WHERE msisdn LIKE '8496%' AND state = 'sent'`))[0].n;
    await plan(env, '2030-04-01T09:00:00+07:00');
    await dispatch(env, '2030-04-01T09:00:00+07:00');
    assert.equal(await sent8496(), 1, 'one per day for 1; none for 2 and 3');
    const q = await env.sql(`SELECT msisdn, kind, state, reason, ${LOCAL('due_at')} AS due FROM reminders
                              WHERE msisdn LIKE '8496%' ORDER BY msisdn, kind DESC`);
    assert.deepEqual(q.map((r) => [r.msisdn, r.kind, r.state]), [
      ['84960000001', 'next', 'sent'],
      ['84960000001', 'failed', 'pending'],
      ['84960000003', 'failed', 'pending'],
    ], 'opted-out numbers get no reminder at all');
    assert.equal(q[1].due, '2030-04-02 07:00:00.000', 'the second one moves to the next day at 07:00');
    assert.equal(q[2].due, '2030-04-01 09:09:00.000', 'mid-flow: moved to when the flow times out');
    await dispatch(env, '2030-04-02T07:00:00+07:00');
    assert.equal(await sent8496(), 3);
    // three per skill: failures on new anchors, one day apart
    for (let d = 3; d <= 6; d++) {
      const day = `2030-04-0${d}`;
      await env.sql(`UPDATE proficiency SET quiz_failed_at = $1 WHERE msisdn = '84960000001' AND skill = 'payment'`,
        [`${day}T08:00:00+07:00`]);
      await plan(env, `${day}T09:00:00+07:00`);
      await dispatch(env, `${day}T09:00:00+07:00`);
    }
    const [{ n }] = await env.sql(`SELECT count(*)::int AS n FROM reminders
                                    WHERE msisdn = '84960000001' AND skill = 'payment' AND state = 'sent'`);
    assert.equal(n, 3);
  });

  it('a number in two overlapping segments, or in two broadcasts, gets one message', async () => {
    await configure(env, { quiet_hours: '' });
    const hh = await household(env, 'OV1', '00691');
    await addSubscribers(env, 84970000000, 4, { household: hh });
    await env.sql(`INSERT INTO proficiency (msisdn, skill, proficient) VALUES ('84970000003', 'payment', true)`);
    const seg = [{ commune: '00691' }, { district: '024', missing_skills: ['payment'] }];
    const [{ id }] = await env.sql(`SELECT sg_broadcast_create($1::jsonb) AS id`, [JSON.stringify({
      name: 'overlap', text: { vi: 'Còn thiếu: {missing_skills}' }, segment: seg, start_at: '2020-01-01T08:00' })]);
    const [{ id: id2 }] = await env.sql(`SELECT sg_broadcast_create($1::jsonb) AS id`, [JSON.stringify({
      name: 'overlap 2', text: { vi: 'again' }, segment: { commune: '00691' }, start_at: '2020-01-01T08:00' })]);
    for (let i = 0; i < 4; i++) await env.sql('SELECT * FROM sg_broadcast_step(NULL, 100)');
    const rows = await env.sql(`SELECT msisdn, broadcast_id, text FROM mt_messages
                                 WHERE msisdn LIKE '8497%' ORDER BY broadcast_id, msisdn`);
    assert.equal(rows.filter((r) => Number(r.broadcast_id) === Number(id)).length, 4, 'each number once');
    assert.equal(rows.filter((r) => Number(r.broadcast_id) === Number(id2)).length, 4);
    const text = (m) => rows.find((r) => r.msisdn === m && Number(r.broadcast_id) === Number(id)).text;
    assert.equal(text('84970000000'), 'Còn thiếu: Thanh toán trực tuyến');
    assert.equal(text('84970000003'), 'Còn thiếu: ', 'matched through the commune; has the listed skill');
    // at send time the daily cap (1) lets one of the two through per number
    const ids = (await env.sql(`SELECT id FROM mt_messages WHERE msisdn LIKE '8497%' ORDER BY id`)).map((r) => r.id);
    const ok = (await env.sql('SELECT unnest(sg_bulk_guard($1::bigint[])) AS id', [ids])).map((r) => r.id);
    assert.equal(ok.length, 4);
    const okRows = await env.sql(`SELECT DISTINCT msisdn FROM mt_messages WHERE id = ANY($1::bigint[])`, [ok]);
    assert.equal(okRows.length, 4);
    const deferred = await env.sql(`SELECT ${LOCAL('next_attempt_at')} AS at FROM mt_messages
                                     WHERE msisdn LIKE '8497%' AND NOT (id = ANY($1::bigint[]))`, [ok]);
    assert.equal(deferred.length, 4);
    assert.ok(deferred.every((r) => r.at.endsWith('00:00:00.000')), 'deferred to the next local day');
  });

  it('the daily cap counts campaign messages by number; quiz replies are not indexed by number (023)', async () => {
    await configure(env, { quiet_hours: '', daily_cap: 1 });
    await addSubscribers(env, 84975000000, 2);
    const [a, b] = ['84975000000', '84975000001'];
    // a: a reminder sent today and many quiz replies; b: quiz replies only
    await env.sql(`INSERT INTO mt_messages (msisdn, text, kind, state, submitted_at)
                   SELECT n, 'reply', 'reply', 'delivered', now() FROM unnest($1::text[]) n, generate_series(1, 5)
                   UNION ALL SELECT $2, 'reminder', 'reminder', 'delivered', now()`, [[a, b], a]);
    const ids = (await env.sql(`INSERT INTO mt_messages (msisdn, text, kind, state)
                                SELECT n, 'news', 'broadcast', 'queued' FROM unnest($1::text[]) n
                                RETURNING id, msisdn`, [[a, b]]));
    const ok = (await env.sql('SELECT unnest(sg_bulk_guard($1::bigint[])) AS id',
      [ids.map((r) => r.id)])).map((r) => r.id);
    assert.deepEqual(ok, ids.filter((r) => r.msisdn === b).map((r) => r.id),
      'a has had its one campaign message today; b\'s replies do not count');
    // every index of mt_messages by number holds campaign messages only: a quiz
    // reply writes no entry there, on insert or on its update to delivered
    const idx = await env.sql(`SELECT indexname, indexdef FROM pg_indexes
                                WHERE tablename = 'mt_messages' AND indexdef ~ '\\(msisdn'`);
    assert.deepEqual(idx.map((r) => r.indexname), ['mt_messages_campaign_msisdn']);
    assert.match(idx[0].indexdef, /WHERE \(kind = ANY \(ARRAY\['broadcast'::text, 'reminder'::text\]\)\)$/);

    // an upgrade whose concurrent build of the index failed (left invalid under
    // that name): the migration drops it and builds the right one
    await env.sql('DROP INDEX mt_messages_campaign_msisdn');
    await assert.rejects(env.sql(`CREATE UNIQUE INDEX CONCURRENTLY mt_messages_campaign_msisdn
                                  ON mt_messages (kind) WHERE kind IN ('broadcast', 'reminder')`), /could not create unique index/);
    const valid = async () => (await env.sql(`SELECT i.indisvalid AS ok, pg_get_indexdef(i.indexrelid) AS def
                                                FROM pg_index i
                                               WHERE i.indexrelid = 'mt_messages_campaign_msisdn'::regclass`))[0];
    assert.equal((await valid()).ok, false);
    await env.sql(fs.readFileSync(path.join(__dirname, '../../sql/023_campaign_msisdn.sql'), 'utf8'));
    const rebuilt = await valid();
    assert.equal(rebuilt.ok, true);
    assert.match(rebuilt.def, /\(msisdn, created_at\) WHERE/);
  });

  it('opt-out between scheduling and sending: the guard cancels, nothing is claimed', async () => {
    await configure(env, { quiet_hours: '', daily_cap: 0 });
    const hh = await household(env, 'OO1', '26737');
    await addSubscribers(env, 84980000000, 3, { household: hh });
    const [{ id }] = await env.sql(`SELECT sg_broadcast_create($1::jsonb) AS id`, [JSON.stringify({
      name: 'optout', text: { vi: 'x' }, segment: { commune: '26737' }, start_at: '2020-01-01T08:00' })]);
    await env.sql('SELECT * FROM sg_broadcast_step(NULL, 100)');
    await env.sql(`UPDATE subscribers SET opted_out = true WHERE msisdn = '84980000001'`);
    const claimed = await env.sql(`SELECT * FROM sg_mt_claim_guarded('t', 1, 10000)`);
    const mine = claimed.filter((r) => r.msisdn.startsWith('8498')).map((r) => r.msisdn).sort();
    assert.deepEqual(mine, ['84980000000', '84980000002']);
    const [c] = await env.sql('SELECT * FROM sg_broadcast_counts($1)', [id]);
    assert.equal(Number(c.cancelled), 1);
    await env.sql(`UPDATE mt_messages SET state = 'cancelled' WHERE owner = 't' AND state = 'submitting'`);
  });

  it('validates broadcasts with clear messages', async () => {
    const bad = [
      [{ name: 'x', text: { vi: 'a' }, segment: { commune: '001' }, start_at: '2030-01-01' }, /is a district code/],
      [{ name: 'x', text: { vi: 'a' }, segment: { commune: '00037', district: '001' }, start_at: '2030-01-01' }, /not in district/],
      [{ name: 'x', text: { vi: 'a' }, segment: { missing_skills: ['cooking'] }, start_at: '2030-01-01' }, /unknown skill "cooking"/],
      [{ name: 'x', text: { vi: 'a' }, segment: { colour: 'red' }, start_at: '2030-01-01' }, /unknown segment field "colour"/],
      [{ name: 'x', text: { vi: 'a' }, start_at: 'tomorrow' }, /not a date or time/],
      [{ name: 'x', text: { vi: 'a' }, start_at: '2030-01-02', end_at: '2030-01-01' }, /end_at must be after/],
      [{ name: 'x', text: {}, start_at: '2030-01-02' }, /a text in vi or en is required/],
      [{ name: 'x', text: { vi: 'a' }, start_at: '2030-01-02', rate: 0 }, /rate must be/],
    ];
    for (const [body, re] of bad) {
      await assert.rejects(env.sql('SELECT sg_broadcast_create($1::jsonb)', [JSON.stringify(body)]), re);
    }
  });
});

async function plan(env, now) {
  const [r] = await env.sql('SELECT sg_reminders_plan($1, 1000, 3600) AS n', [now]);
  return r.n;
}

async function dispatch(env, now) {
  const [r] = await env.sql('SELECT sg_reminders_dispatch($1, 1000) AS n', [now]);
  return r.n;
}

describe('campaigns through the daemon', () => {
  let env;
  before(async () => {
    env = await h.start({ links: { viettel: { conf: { rate: 0 } } }, conf: { campaign: { quiet_hours: '', daily_cap: 0 } } });
  });
  after(async () => { if (env) await env.stop(); });

  it('skillctl broadcast create / show / cancel mid-broadcast stops what is not submitted', async () => {
    const hh = await household(env, 'CX1', '00037');
    await addSubscribers(env, 84920000000, 300, { household: hh });
    const cr = await env.skillctl(['broadcast', 'create', '--name', 'cancel me', '--text-vi', 'Xin chào {household}',
      '--commune', '00037', '--start', '2020-01-01T08:00', '--rate', '40']);
    assert.equal(cr.code, 0, cr.stderr);
    const id = cr.stdout.match(/broadcast (\d+) created/)[1];
    assert.match(cr.stdout, /300 number\(s\) match now/);
    const bad = await env.skillctl(['broadcast', 'create', '--name', 'x', '--text-vi', 'y', '--commune', '999',
      '--start', '2030-01-01']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unknown locality code "999"/);

    const mine = () => env.sim.submits.filter((s) => s.to.startsWith('8492'));
    await h.waitFor(() => mine().length >= 40, 20000, 'the broadcast to start');
    const cc = await env.skillctl(['broadcast', 'cancel', id]);
    assert.equal(cc.code, 0, cc.stderr);
    await new Promise((r) => setTimeout(r, 1500));
    const sent = mine().length;
    assert.ok(sent < 300, `cancel stopped the broadcast (${sent} sent)`);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(mine().length, sent, 'nothing more after cancel');
    const show = await env.skillctl(['broadcast', 'show', id, '--json']);
    assert.equal(show.code, 0, show.stderr);
    const c = JSON.parse(show.stdout);
    assert.equal(c.state, 'cancelled');
    assert.equal(c.targeted, 300);
    assert.equal(c.submitted + c.cancelled, 300);
    assert.equal(c.submitted, sent);
    assert.equal(new Set(mine().map((s) => s.to)).size, sent, 'no duplicate');
    assert.ok(c.submitted <= 300 && c.text.vi === 'Xin chào {household}');
    assert.equal(mine()[0].text, 'Xin chào CX1');
  });

  it('STOP between scheduling and sending: nothing more goes to that number', async () => {
    const hh = await household(env, 'ST1', '00040');
    await addSubscribers(env, 84990000000, 20, { household: hh });
    const victim = '84990000019'; // last in msisdn order: sent last
    const cr = await env.skillctl(['broadcast', 'create', '--name', 'stop', '--text-vi', 'hello',
      '--commune', '00040', '--start', '2020-01-01T08:00', '--rate', '5']);
    assert.equal(cr.code, 0, cr.stderr);
    await h.waitFor(() => env.sim.submits.some((s) => s.to.startsWith('8499')), 20000, 'the first message');
    await env.sim.deliver({ from: victim, to: '8079', text: 'TUCHOI' });
    await h.waitFor(async () => (await env.sql(
      `SELECT 1 FROM subscribers WHERE msisdn = $1 AND opted_out`, [victim])).length > 0, 10000, 'the opt-out');
    await h.waitFor(async () => (await env.sql(
      `SELECT 1 FROM mt_messages WHERE msisdn LIKE '8499%' AND state IN ('queued', 'submitting')`)).length === 0,
    20000, 'the broadcast to finish');
    const toVictim = env.sim.submits.filter((s) => s.to === victim);
    assert.ok(toVictim.every((s) => !/hello/.test(s.text)), 'no broadcast after STOP');
    assert.equal(env.sim.submits.filter((s) => s.to.startsWith('8499') && s.text === 'hello').length, 19);
  });

  it('two instances send a 10,000-recipient broadcast: each number exactly once', async () => {
    const conf2 = path.join(env.dir, 'second.conf');
    fs.writeFileSync(conf2, fs.readFileSync(env.confPath, 'utf8').replace('[gateway]\n', '[gateway]\ninstance_name = second\n'),
      { mode: 0o600 });
    await env.startDaemon({ confPath: conf2 });
    const hh = await household(env, 'BIG1', '00001');
    await addSubscribers(env, 84910000000, 10000, { household: hh });
    const cr = await env.skillctl(['broadcast', 'create', '--name', 'big', '--text-vi', 'Tuần lễ thanh toán',
      '--text-en', 'Payment week', '--commune', '00001', '--start', '2020-01-01T08:00']);
    assert.equal(cr.code, 0, cr.stderr);
    const id = cr.stdout.match(/broadcast (\d+) created/)[1];
    const mine = () => env.sim.submits.filter((s) => s.to.startsWith('8491'));
    await h.waitFor(() => mine().length >= 10000, 60000, '10,000 submits');
    await new Promise((r) => setTimeout(r, 1000));
    const got = mine();
    const counts = new Map();
    for (const s of got) counts.set(s.to, (counts.get(s.to) || 0) + 1);
    assert.equal(counts.size, 10000, 'no gap');
    assert.equal(got.length, 10000, 'no duplicate');
    const sessions = new Set(got.map((s) => s.session));
    assert.ok(sessions.size >= 1);
    const owners = await env.sql(`SELECT owner, count(*)::int AS n FROM mt_messages WHERE broadcast_id = $1 GROUP BY owner`, [id]);
    assert.equal(owners.reduce((a, r) => a + r.n, 0), 10000);
    // the submit results are committed in batches: wait for the counts to catch up
    const b = await h.waitFor(async () => {
      const [r] = await env.sql('SELECT * FROM sg_broadcast_counts($1)', [id]);
      return Number(r.submitted) === 10000 ? r : null;
    }, 20000, 'submitted = 10000');
    assert.equal(b.targeted, 10000);
    assert.equal(Number(b.queued), 0);
  });

  it('the daemon takes its clock from SKILLGATE_FAKE_NOW', async () => {
    for (let i = 0; i < env.daemons.length; i++) await env.stopDaemon(i);
    await env.sql(`INSERT INTO subscribers (msisdn, language) VALUES ('84900000777', 'en')`);
    await env.sql(`INSERT INTO proficiency (msisdn, skill, best_quiz, quiz_failed_at)
                   VALUES ('84900000777', 'shopping', 1, '2030-04-25T10:00:00+07:00')`);
    await env.startDaemon({ env: { SKILLGATE_FAKE_NOW: '2030-05-01T10:00:00+07:00' } });
    const [r] = await h.waitFor(async () => {
      const rows = await env.sql(`SELECT state, ${LOCAL('sent_at')} AS sent, ${LOCAL('due_at')} AS due
                                    FROM reminders WHERE msisdn = '84900000777'`);
      return rows.length && rows[0].state === 'sent' ? rows : null;
    }, 15000, 'the reminder');
    assert.equal(r.sent, '2030-05-01 10:00:00.000');
    assert.equal(r.due, '2030-04-28 10:00:00.000');
    assert.match(env.log(env.daemons.length - 1), /fake clock: now = 2030-05-01T10:00:00\+07:00 \(frozen\)/);
  });
});

// The configured [campaign] settings are written to the database at start-up;
// bulk messages already queued must not be judged by the settings a previous
// run left behind (here: quiet all day) before that write commits.
describe('start-up with bulk messages already queued', () => {
  it('nothing is claimed under stale campaign settings: all sent at once under the configured ones', async () => {
    const env = await h.start({ daemon: false, conf: { campaign: { quiet_hours: '' } } });
    try {
      await configure(env, { quiet_hours: '00:00-23:59', daily_cap: 0 });
      const N = 3000;
      await env.sql(`INSERT INTO mt_messages (msisdn, text, kind, priority, state)
                     SELECT '8496' || lpad(g::text, 7, '0'), 'queued before start', 'broadcast', 1, 'queued'
                       FROM generate_series(1, $1) g`, [N]);
      await env.startDaemon();
      await env.waitFor(async () => (await env.sql("SELECT count(*)::int AS n FROM mt_messages WHERE state IN ('submitted', 'delivered')"))[0].n === N,
        30000, 'every queued bulk message sent')
        .catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await env.sql("SELECT state, next_attempt_at > now() AS deferred, count(*)::int FROM mt_messages GROUP BY 1, 2"))}`); });
      const [cs] = await env.sql('SELECT quiet_hours FROM campaign_settings');
      assert.equal(cs.quiet_hours, '', 'the configured settings replaced the stale ones');
    } finally {
      await env.stop();
    }
  });
});
