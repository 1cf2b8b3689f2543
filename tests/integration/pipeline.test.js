'use strict';
// The durable pipeline (issue 5): kill -9 under load, PostgreSQL stopped under
// load, duplicates, priorities with a bulk backlog.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');

const PGDIR = process.env.SG_PG_DIR;

// Delivers like an SMSC: retries until the ESME answers 0 (temporary errors,
// timeouts and closed links are retried after a pause).
async function deliverReliably(sim, mo, deadline) {
  for (;;) {
    try {
      const st = await sim.deliver({ ...mo, timeoutMs: 3000 });
      if (st === 0) return;
    } catch (e) { /* link down or no response: retry */ }
    if (Date.now() > deadline) throw new Error(`MO from ${mo.from} never acknowledged`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function pool(items, n, fn) {
  let i = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (i < items.length) { const it = items[i++]; await fn(it); }
  }));
}

test('kill -9 at random moments: every MO answered, none lost, duplicates only where marked', async (t) => {
  const env = await h.start({ conf: { database: { dedupe_window: 60 } } });
  try {
    const N = Number(process.env.SG_KILL_TEST_MOS || 1500);
    const numbers = Array.from({ length: N }, (_, i) => `8498${String(1000000 + i)}`);
    const deadline = Date.now() + 100000 + N * 50;
    let sent = 0;
    const killer = (async () => {
      for (let k = 0; k < 3; k++) {
        await env.waitFor(() => sent >= ((k + 1) * N) / 4 + Math.floor(Math.random() * N / 8), 60000 + N * 20, 'progress');
        await env.kill9();
        await env.startDaemon();
      }
    })();
    await pool(numbers, 40, async (n) => {
      await deliverReliably(env.sim, { from: n, to: '8079', text: 'HOC 1' }, deadline);
      sent++;
    });
    await killer;
    // every MO committed and processed exactly once
    await env.waitFor(async () => (await env.sql("SELECT count(*)::int AS n FROM mo_messages WHERE state = 'processed'"))[0].n >= N, 60000, 'all MOs processed')
      .catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await env.sql('SELECT state, count(*) FROM mo_messages GROUP BY 1'))}`); });
    const mo = await env.sql('SELECT msisdn, count(*)::int AS n FROM mo_messages GROUP BY msisdn');
    assert.equal(mo.length, N);
    assert.ok(mo.every((r) => r.n === 1), 'one MO row per number');
    // every reply reached the SMSC
    await env.waitFor(async () => (await env.sql(
      "SELECT count(*)::int AS n FROM mt_messages WHERE state NOT IN ('submitted', 'delivered')"))[0].n === 0, 30000, 'every reply submitted')
      .catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await env.sql('SELECT state, error_status, count(*) FROM mt_messages GROUP BY 1, 2'))}`); });
    const got = new Map();
    for (const s of env.sim.submits) got.set(s.to, (got.get(s.to) || 0) + 1);
    const mts = await env.sql('SELECT msisdn, count(*)::int AS n, sum(nparts)::int AS parts, bool_or(maybe_duplicate) AS dup FROM mt_messages GROUP BY msisdn');
    assert.equal(mts.length, N, 'every number has replies');
    let dupNumbers = 0;
    for (const r of mts) {
      const seen = got.get(r.msisdn) || 0;
      assert.ok(seen >= r.parts, `${r.msisdn}: ${seen} segments seen, ${r.parts} expected`);
      if (seen > r.parts) {
        dupNumbers++;
        assert.ok(r.dup, `${r.msisdn} got a duplicate that is not marked maybe_duplicate`);
      }
    }
    t.diagnostic(`${N} MO, 3 kills, ${dupNumbers} numbers got a marked duplicate`);
  } finally {
    await env.stop();
  }
});

test('PostgreSQL stopped under load: temporary errors, then traffic resumes with no loss', async () => {
  const env = await h.start();
  try {
    const N = 600;
    const numbers = Array.from({ length: N }, (_, i) => `8497${String(2000000 + i)}`);
    const statuses = [];
    const origDeliver = env.sim.deliver.bind(env.sim);
    env.sim.deliver = async (m) => { const st = await origDeliver(m); statuses.push(st); return st; };
    const deadline = Date.now() + 90000;
    let sent = 0;
    const outage = (async () => {
      await env.waitFor(() => sent >= N / 3, 60000, 'load');
      await h.run('bash', [path.join(h.ROOT, 'scripts/pg.sh'), 'stop', PGDIR]);
      await new Promise((r) => setTimeout(r, 3000));
      await h.run('bash', [path.join(h.ROOT, 'scripts/pg.sh'), 'start', PGDIR, String(h.PG_PORT)]);
    })();
    await pool(numbers, 20, async (n) => {
      await deliverReliably(env.sim, { from: n, to: '8079', text: 'HELP' }, deadline);
      sent++;
    });
    await outage;
    await env.reconnectDb();
    assert.ok(statuses.some((s) => s === 0x64), 'the SMSC saw ESME_RX_T_APPN during the outage');
    await env.waitFor(async () => (await env.sql("SELECT count(DISTINCT msisdn)::int AS n FROM mt_messages WHERE state IN ('submitted','delivered')"))[0].n === N, 30000, 'every number answered');
    const mo = await env.sql("SELECT count(DISTINCT msisdn)::int AS n FROM mo_messages WHERE state = 'processed'");
    assert.equal(mo[0].n, N);
  } finally {
    await env.stop();
  }
});

// Disk full and a read-only database look alike to the daemon: every write
// fails while reads work. ALTER SYSTEM + reload turns the whole cluster
// read-only for sessions already open (test files run one at a time).
test('read-only database under load: clear errors, nothing acknowledged is lost, results retried', async () => {
  const env = await h.start();
  const setReadOnly = async (on) => {
    await env.sql(on ? 'ALTER SYSTEM SET default_transaction_read_only = on' : 'ALTER SYSTEM RESET default_transaction_read_only');
    await env.sql('SELECT pg_reload_conf()');
  };
  try {
    const N = 600;
    const numbers = Array.from({ length: N }, (_, i) => `8497${String(5000000 + i)}`);
    const statuses = [];
    const acked = new Set();
    const origDeliver = env.sim.deliver.bind(env.sim);
    env.sim.deliver = async (m) => { const st = await origDeliver(m); statuses.push(st); if (st === 0) acked.add(m.from); return st; };
    const deadline = Date.now() + 90000;
    let sent = 0;
    let roAt = -1;
    const outage = (async () => {
      await env.waitFor(() => sent >= N / 3, 60000, 'load');
      await setReadOnly(true);
      roAt = statuses.length;
      await new Promise((r) => setTimeout(r, 3000));
      await setReadOnly(false);
    })();
    await pool(numbers, 20, async (n) => {
      await deliverReliably(env.sim, { from: n, to: '8079', text: 'HELP' }, deadline);
      sent++;
    });
    await outage;
    assert.ok(statuses.slice(roAt).some((s) => s === 0x64), 'the SMSC saw ESME_RX_T_APPN while the database was read-only');
    assert.match(env.log(), /read-only transaction/, 'the log names the cause');
    // every acknowledged MO is in the database, processed once, and answered
    assert.equal(acked.size, N);
    await env.waitFor(async () => (await env.sql("SELECT count(DISTINCT msisdn)::int AS n FROM mt_messages WHERE state IN ('submitted','delivered')"))[0].n === N, 30000, 'every number answered')
      .catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await env.sql('SELECT state, count(*) FROM mt_messages GROUP BY 1'))}`); });
    const mo = await env.sql("SELECT msisdn, count(*)::int AS n FROM mo_messages WHERE state = 'processed' GROUP BY 1");
    assert.equal(mo.length, N);
    assert.ok(mo.every((r) => r.n === 1), 'one MO row per number');
    // submit results that failed to commit were retried: no reply left 'submitting',
    // every submitted part recorded (so its receipt can match), none sent twice
    await env.waitFor(async () => (await env.sql("SELECT count(*)::int AS n FROM mt_messages WHERE state = 'submitting'"))[0].n === 0, 20000, 'no reply left submitting');
    const parts = await env.sql('SELECT count(*)::int AS n FROM mt_segments');
    const seg = await env.sql("SELECT sum(nparts)::int AS n FROM mt_messages WHERE state IN ('submitted','delivered')");
    assert.equal(parts[0].n, seg[0].n, 'every submitted segment is recorded (mt_parts or, delivered at once, smsc_ids)');
    const per = new Map();
    for (const s of env.sim.submits) per.set(s.to, (per.get(s.to) || 0) + 1);
    const mts = await env.sql('SELECT msisdn, sum(nparts)::int AS parts FROM mt_messages GROUP BY 1');
    for (const r of mts) assert.equal(per.get(r.msisdn), r.parts, `${r.msisdn}: each segment submitted once`);
  } finally {
    await setReadOnly(false).catch(() => {});
    await env.stop();
  }
});

test('a bulk backlog never holds back interactive replies', async (t) => {
  const env = await h.start({ links: { viettel: { sim: { recordSubmits: true }, conf: { rate: 2000, window: 20 } } } });
  try {
    const BULK = 100000;
    await env.sql(`INSERT INTO mt_messages (msisdn, text, kind, priority, state)
                   SELECT '8496' || lpad(g::text, 7, '0'), 'Broadcast ' || g, 'broadcast', 1, 'queued'
                   FROM generate_series(1, $1) g`, [BULK]);
    await env.sim.waitFor(() => env.sim.submits.length > 500, 20000);
    const t0 = Date.now();
    const numbers = Array.from({ length: 50 }, (_, i) => `8491${String(3000000 + i)}`);
    await pool(numbers, 10, (n) => deliverReliably(env.sim, { from: n, to: '8079', text: 'HELP' }, Date.now() + 30000));
    await env.sim.waitFor(() => numbers.every((n) => env.sim.submits.some((s) => s.to === n)), 20000);
    const bulkLeft = (await env.sql("SELECT count(*)::int AS n FROM mt_messages WHERE kind = 'broadcast' AND state = 'queued'"))[0].n;
    t.diagnostic(`50 interactive replies submitted in ${Date.now() - t0} ms with ${bulkLeft} bulk messages still queued`);
    assert.ok(bulkLeft > 0, 'interactive replies went out while the bulk backlog was still queued');
    // the daemon streams the backlog in bounded batches: never more than a few claims' worth in memory
    const inflight = (await env.sql("SELECT count(*)::int AS n FROM mt_messages WHERE state = 'submitting'"))[0].n;
    assert.ok(inflight <= 2048, `${inflight} messages claimed at once`);
  } finally {
    await env.stop();
  }
});

test('loop guard: more than loop_max identical exchanges in the window get no reply', async () => {
  await h.withEnv({ conf: { database: { dedupe_window: 0 }, content: { loop_max: 5, loop_window: 300 } } }, async (env) => {
    const n = '84912349999';
    // last_mo_at is stamped by a processed MO (with its flow state) and by a
    // looping one (alone): MO 5 and MO 8 come 1.2 s after the one before
    const stampedBy = async (k) => (await env.sql(
      "SELECT s.last_mo_at >= m.received_at - interval '50 ms' AS ok FROM subscribers s, (SELECT received_at FROM mo_messages WHERE msisdn = $1 ORDER BY id OFFSET $2 LIMIT 1) m WHERE s.msisdn = $1",
      [n, k - 1]))[0].ok;
    for (let i = 0; i < 8; i++) {
      if (i === 4 || i === 7) await new Promise((r) => setTimeout(r, 1200));
      assert.equal(await env.sim.deliver({ from: n, to: '8079', text: 'HELP' }), 0, `deliver_sm_resp of MO ${i + 1}`);
      await env.waitFor(async () => (await env.sql("SELECT count(*)::int AS c FROM mo_messages WHERE msisdn = $1 AND state IN ('processed', 'looping')", [n]))[0].c === i + 1, 10000, `MO ${i + 1} handled`);
      if (i === 4) assert.ok(await stampedBy(5), 'last_mo_at stamped by a processed MO');
    }
    assert.ok(await stampedBy(8), 'last_mo_at stamped by a looping MO');
    const mo = await env.sql('SELECT state FROM mo_messages WHERE msisdn = $1 ORDER BY id', [n]);
    assert.deepEqual(mo.map((r) => r.state), ['processed', 'processed', 'processed', 'processed', 'processed', 'looping', 'looping', 'looping']);
    const replies = await env.sql('SELECT count(*)::int AS c FROM mt_messages WHERE msisdn = $1', [n]);
    assert.equal(replies[0].c, 5, 'replies stop after loop_max');
    assert.match(env.log(), /loop guard/);
  });
});

// sg_mo_commit at the SQL level (019): this daemon's elements carry the ids
// sg_mo_prepare reserved and go to sg_mo_apply as they are; a previous
// daemon's (no "mo") still commit, the ids drawn there. Either way a looping
// MO is stored as looping, and only processed MOs get replies.
test('sg_mo_commit keeps the ids sg_mo_prepare reserved; a previous daemon\'s batch still commits', async () => {
  const env = await h.start({});
  try {
    const el = (n, mo, state) => ({
      ...(mo ? { mo, fresh: true, seen: true } : {}), msisdn: n,
      ...(state === 'processed' ? { src: 'sms', state: '', sc: false, lang: '', opt: 0, help: false, join: '', replies: [`hi ${n}`], ev: [], link: 'viettel' } : {}),
      in: { link: 'viettel', smsc_id: '', dest: '8079', text: 'X', partial: false, state },
    });
    const commit = async (els) => env.sql("SELECT * FROM sg_mo_commit($1::jsonb, 'both', 'test')", [JSON.stringify(els)]);
    const stored = async (n) => env.sql('SELECT id::text, state FROM mo_messages WHERE msisdn = $1 ORDER BY id', [n]);
    const replies = async (n) => (await env.sql('SELECT count(*)::int AS c FROM mt_messages WHERE msisdn = $1', [n]))[0].c;

    const a = '84913000001', b = '84913000002';
    const prep = await env.sql("SELECT idx, status, is_new, mo_id::text FROM sg_mo_prepare(ARRAY['viettel','viettel'], ARRAY['',''], ARRAY[$1,$2], ARRAY['X','X'], 0, 10, 60)", [a, b]);
    assert.deepEqual(prep.map((r) => [r.idx, r.status, r.is_new]), [[1, 'new', true], [2, 'new', true]]);
    assert.ok(BigInt(prep[1].mo_id) > BigInt(prep[0].mo_id), 'ids increase in batch order');
    const rows = await commit([el(a, prep[0].mo_id, 'processed'), el(b, prep[1].mo_id, 'looping')]);
    assert.deepEqual(rows.filter((r) => r.kind === 'mo').map((r) => String(r.mo_id)), [prep[0].mo_id, prep[1].mo_id]);
    assert.deepEqual(await stored(a), [{ id: prep[0].mo_id, state: 'processed' }]);
    assert.deepEqual(await stored(b), [{ id: prep[1].mo_id, state: 'looping' }]);
    assert.equal(await replies(a), 1);
    assert.equal(await replies(b), 0);
    const again = await env.sql('SELECT is_new FROM sg_mo_prepare(ARRAY[\'viettel\'], ARRAY[\'\'], ARRAY[$1], ARRAY[\'Y\'], 0, 10, 60)', [a]);
    assert.equal(again[0].is_new, false, 'a stored number is not new');

    // the previous daemon: no "mo", looping elements only in "in"
    const c = '84913000003', d = '84913000004';
    const old = await commit([el(c, null, 'processed'), { msisdn: d, in: el(d, null, 'looping').in }]);
    assert.equal(old.filter((r) => r.kind === 'mo').length, 2);
    assert.equal((await stored(c))[0].state, 'processed');
    assert.equal((await stored(d))[0].state, 'looping');
    assert.equal(await replies(c), 1);
    assert.equal(await replies(d), 0);
    const seen = await env.sql('SELECT count(*)::int AS c FROM subscribers WHERE msisdn = ANY($1) AND last_mo_at IS NOT NULL', [[a, b, c, d]]);
    assert.equal(seen[0].c, 4, 'last_mo_at stamped for every number');
  } finally {
    await env.stop();
  }
});

// Several MOs of one number in one batch (021): the latest element's flow
// state and language win, and per skill the latest self-assessment and quiz
// source, the best quiz score; the snapshot lists the skills in position
// order.
test('sg_mo_commit: within a batch the latest MO of a number wins; snapshots list skills in position order', async () => {
  const env = await h.start({});
  try {
    const a = '84913000011', b = '84913000012';
    const texts = ['HOC 1', 'A', 'B', 'HOC 2'];
    const nums = [a, a, a, b];
    const prep = await env.sql('SELECT idx, mo_id::text FROM sg_mo_prepare($1::text[], $2::text[], $3::text[], $4::text[], 0, 10, 60) ORDER BY idx',
      [nums.map(() => 'viettel'), nums.map(() => ''), nums, texts]);
    const el = (i, src, state, sc, lang, ev) => ({
      mo: prep[i].mo_id, fresh: true, seen: true, msisdn: nums[i], src, state, sc, lang, opt: 0, help: false,
      join: '', replies: [], ev, link: 'viettel',
      in: { link: 'viettel', smsc_id: '', dest: '8079', text: texts[i], partial: false, state: 'processed' },
    });
    await env.sql("SELECT * FROM sg_mo_commit($1::jsonb, 'both', 'test')", [JSON.stringify([
      el(0, 'sms', 'Q:first', true, 'en', [[1, 'self', 1, false], [4, 'self', 2, false]]),
      el(1, 'sms', 'Q:second', true, 'vi', [[1, 'self', 3, false], [2, 'quiz', 4, true]]),
      el(2, 'ussd', '', false, '', [[2, 'quiz', 2, false]]),
      el(3, 'sms', 'Q:other', true, 'en', [[5, 'self', 0, false]]),
    ])]);
    const sub = async (n) => (await env.sql('SELECT flow_state, language FROM subscribers WHERE msisdn = $1', [n]))[0];
    assert.deepEqual(await sub(a), { flow_state: 'Q:second', language: 'vi' }, 'the latest changed state and language');
    assert.deepEqual(await sub(b), { flow_state: 'Q:other', language: 'en' });
    const prof = await env.sql(`SELECT skill, self_level, self_source, best_quiz, quiz_source,
        quiz_passed_at IS NOT NULL AS passed, quiz_failed_at IS NOT NULL AS failed
      FROM proficiency WHERE msisdn = $1 ORDER BY skill`, [a]);
    assert.deepEqual(prof, [
      { skill: 'public_services', self_level: 3, self_source: 'sms', best_quiz: null, quiz_source: null, passed: false, failed: false },
      { skill: 'safety', self_level: 2, self_source: 'sms', best_quiz: null, quiz_source: null, passed: false, failed: false },
      { skill: 'shopping', self_level: null, self_source: null, best_quiz: 4, quiz_source: 'ussd', passed: true, failed: true },
    ]);
    const snap = await env.sql('SELECT msisdn, self_levels, best_quiz, passed FROM sg_sub_snapshots(ARRAY[$1, $2]) ORDER BY idx', [a, b]);
    assert.deepEqual(snap, [
      { msisdn: a, self_levels: '3,-1,-1,2,-1', best_quiz: '-1,4,-1,-1,-1', passed: '0,1,0,0,0' },
      { msisdn: b, self_levels: '-1,-1,-1,-1,0', best_quiz: '-1,-1,-1,-1,-1', passed: '0,0,0,0,0' },
    ]);
  } finally {
    await env.stop();
  }
});

// sg_mo_commit (026) inserts the numbers of a batch's elements unless the
// daemon marked them "known" (its sg_mo_prepare read found them); an element
// without the mark (a previous daemon's) is inserted as before.
test('sg_mo_commit inserts only the numbers not marked known (026)', async () => {
  const env = await h.start({ daemon: false });
  try {
    const nums = ['84913000041', '84913000042', '84913000043'];
    const prep = await env.sql('SELECT idx, mo_id::text FROM sg_mo_prepare($1::text[], $2::text[], $3::text[], $4::text[], 0, 10, 60) ORDER BY idx',
      [nums.map(() => 'viettel'), nums.map(() => ''), nums, nums.map(() => 'HELP')]);
    const el = (i, extra) => ({
      mo: prep[i].mo_id, fresh: true, seen: true, msisdn: nums[i], src: 'sms', state: '', sc: false, lang: '',
      opt: 0, help: true, join: '', replies: [], ev: [], link: 'viettel', ...extra,
      in: { link: 'viettel', smsc_id: '', dest: '8079', text: 'HELP', partial: false, state: 'processed' },
    });
    // the second is marked known though it is not there: the mark is what
    // spares the insert (in the daemon it comes from the subscriber row read)
    await env.sql("SELECT * FROM sg_mo_commit($1::jsonb, 'both', 'test')",
      [JSON.stringify([el(0, {}), el(1, { known: true }), el(2, { known: false })])]);
    const subs = await env.sql('SELECT msisdn FROM subscribers WHERE msisdn = ANY ($1) ORDER BY 1', [nums]);
    assert.deepEqual(subs.map((r) => r.msisdn), [nums[0], nums[2]]);
    const mos = await env.sql("SELECT msisdn FROM mo_messages WHERE msisdn = ANY ($1) AND state = 'processed' ORDER BY 1", [nums]);
    assert.deepEqual(mos.map((r) => r.msisdn), nums, 'every MO stored');
  } finally {
    await env.stop();
  }
});

// 027: a batch runs only the statements some element asks for. Statement-level
// triggers (they fire for a statement that touches no row) count which ran:
// a batch of known numbers with no event, no opt-out and every MO stored
// fresh runs none of the four; each element that asks for one runs it, and
// its work is done.
test('sg_mo_commit / sg_mo_apply run the statements a batch needs and no others (027)', async () => {
  const env = await h.start({ daemon: false });
  try {
    await env.sql(`CREATE TABLE stmt_log (what text);
      CREATE FUNCTION stmt_log() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO stmt_log (what) VALUES (TG_OP || ' ' || TG_TABLE_NAME); RETURN NULL; END $$;
      CREATE TRIGGER l AFTER INSERT ON proficiency_events FOR EACH STATEMENT EXECUTE FUNCTION stmt_log();
      CREATE TRIGGER l AFTER INSERT ON proficiency FOR EACH STATEMENT EXECUTE FUNCTION stmt_log();
      CREATE TRIGGER l AFTER UPDATE ON mt_messages FOR EACH STATEMENT EXECUTE FUNCTION stmt_log();
      CREATE TRIGGER l AFTER UPDATE ON mo_messages FOR EACH STATEMENT EXECUTE FUNCTION stmt_log();
      CREATE TRIGGER l AFTER INSERT ON subscribers FOR EACH STATEMENT EXECUTE FUNCTION stmt_log();`);
    const ran = async () => (await env.sql('DELETE FROM stmt_log RETURNING what')).map((r) => r.what).sort();
    const nums = ['84913000051', '84913000052', '84913000053'];
    await env.sql('INSERT INTO subscribers (msisdn) SELECT unnest($1::text[])', [nums.slice(0, 2)]);
    const [bulk] = await env.sql(`INSERT INTO mt_messages (msisdn, text, kind, priority, state)
      VALUES ($1, 'bulk', 'broadcast', 1, 'queued') RETURNING id`, [nums[1]]);
    await ran();
    const commit = async (els) => {
      const prep = await env.sql('SELECT idx, mo_id::text FROM sg_mo_prepare($1::text[], $2::text[], $3::text[], $4::text[], 0, 10, 60) ORDER BY idx',
        [els.map(() => 'viettel'), els.map(() => ''), els.map((e) => e.n), els.map(() => 'HOC 1')]);
      const batch = els.map((e, i) => ({
        mo: prep[i].mo_id, fresh: true, seen: true, msisdn: e.n, src: 'sms', state: '', sc: false, lang: '',
        opt: 0, help: false, join: '', replies: ['ok'], ev: [], link: 'viettel', ...e.x,
        in: { link: 'viettel', smsc_id: '', dest: '8079', text: 'HOC 1', partial: false, state: 'processed' },
      }));
      await env.sql("SELECT * FROM sg_mo_commit($1::jsonb, 'both', 'test')", [JSON.stringify(batch)]);
    };

    await commit([{ n: nums[0], x: { known: true } }, { n: nums[1], x: { known: true } }]);
    assert.deepEqual(await ran(), [], 'nothing asked for: none of the four ran');

    await commit([{ n: nums[0], x: { known: true, ev: [[1, 'self', 2, false]] } }]);
    assert.deepEqual(await ran(), ['INSERT proficiency', 'INSERT proficiency_events']);
    const [p] = await env.sql("SELECT self_level FROM proficiency WHERE msisdn = $1 AND skill = 'public_services'", [nums[0]]);
    assert.equal(p.self_level, 2);

    await commit([{ n: nums[1], x: { known: true, opt: -1 } }]);
    assert.deepEqual(await ran(), ['UPDATE mt_messages']);
    const [m] = await env.sql('SELECT state FROM mt_messages WHERE id = $1', [bulk.id]);
    assert.equal(m.state, 'cancelled', "the opted-out number's queued bulk message");

    await commit([{ n: nums[0], x: { known: true } }, { n: nums[2], x: {} }]);
    assert.deepEqual(await ran(), ['INSERT subscribers'], 'a number not marked known');
    assert.equal((await env.sql('SELECT 1 FROM subscribers WHERE msisdn = $1', [nums[2]])).length, 1);

    // an MO stored as received (the recovery of unprocessed MOs) is not "fresh": its row is marked processed
    const [mo] = await env.sql(`INSERT INTO mo_messages (link, msisdn, text) VALUES ('viettel', $1, 'HOC 1') RETURNING id::text`, [nums[0]]);
    await env.sql("SELECT * FROM sg_mo_apply($1::jsonb, 'both', 'test')",
      [JSON.stringify([{ mo: mo.id, msisdn: nums[0], src: 'sms', state: '', sc: false, opt: 0, replies: [], ev: [] }])]);
    assert.deepEqual(await ran(), ['UPDATE mo_messages']);
    assert.equal((await env.sql('SELECT state FROM mo_messages WHERE id = $1', [mo.id]))[0].state, 'processed');
  } finally {
    await env.stop();
  }
});

// The flow engine's read of a batch: a number's proficiency rows as strings
// by skill position, a skill without a row as -1 / -1 / 0, from one probe of
// proficiency_pkey per known number and none for a number it does not know.
// 024 rewrote the read without sorts for speed (measured by
// tests/bench/sqlreplay.sh, not here); this holds it to the same output and
// the same reads as before.
test('sg_sub_snapshots: proficiency by skill position, at most one index probe per known number', async () => {
  const env = await h.start({ daemon: false });
  try {
    const [a, b, c, unknown] = ['84913000021', '84913000022', '84913000023', '84913000029'];
    await env.sql('INSERT INTO subscribers (msisdn) VALUES ($1), ($2), ($3)', [a, b, c]);
    await env.sql(`INSERT INTO proficiency (msisdn, skill, self_level, self_source, best_quiz, quiz_passed_at, quiz_source)
                   VALUES ($1, 'payment', 2, 'sms', 5, now(), 'sms'), ($1, 'platforms', 1, 'ussd', NULL, NULL, NULL),
                          ($2, 'public_services', NULL, NULL, 3, NULL, 'sms')`, [a, b]);
    const scans = async () => (await env.sql(
      "SELECT pg_stat_get_xact_numscans('proficiency_pkey'::regclass)::int AS n"))[0].n;
    await env.sql('BEGIN');
    try {
      const s0 = await scans();
      const snap = await env.sql(`SELECT msisdn, self_levels, best_quiz, passed
                                    FROM sg_sub_snapshots(ARRAY[$1, $2, $3, $4]) ORDER BY idx`, [a, b, c, unknown]);
      assert.equal(await scans() - s0, 3, 'one probe per known number, none for the unknown one');
      assert.deepEqual(snap, [
        { msisdn: a, self_levels: '-1,-1,2,-1,1', best_quiz: '-1,-1,5,-1,-1', passed: '0,0,1,0,0' },
        { msisdn: b, self_levels: '-1,-1,-1,-1,-1', best_quiz: '3,-1,-1,-1,-1', passed: '0,0,0,0,0' },
        { msisdn: c, self_levels: '-1,-1,-1,-1,-1', best_quiz: '-1,-1,-1,-1,-1', passed: '0,0,0,0,0' },
        { msisdn: null, self_levels: null, best_quiz: null, passed: null },
      ]);
    } finally {
      await env.sql('ROLLBACK');
    }
  } finally {
    await env.stop();
  }
});

// sg_mo_prepare is planned once per session (025): a small batch no longer
// pays for planning its statements on every call. Its generic plan is made
// with the statistics of the moment, so it must stay on the indexes after
// mo_messages has grown from nothing: no sequential scan of it, and
// duplicates (by SMSC id) and loops (by number and text) are still found.
test('sg_mo_prepare: planned once per session, and by index after the tables grew (025)', async () => {
  const env = await h.start({ daemon: false });
  try {
    const [cfg] = await env.sql("SELECT proconfig FROM pg_proc WHERE proname = 'sg_mo_prepare'");
    assert.ok(cfg.proconfig.includes('plan_cache_mode=force_generic_plan'), String(cfg.proconfig));
    const prepare = (smscIds, nums, texts) => env.sql(
      `SELECT idx, status FROM sg_mo_prepare($1::text[], $2::text[], $3::text[], $4::text[], 0, 3, 600)
        ORDER BY idx`, [nums.map(() => 'viettel'), smscIds, nums, texts]);
    await env.sql('ANALYZE mo_messages');
    // the plan, made with mo_messages empty
    assert.deepEqual((await prepare([''], ['84913000031'], ['HELP'])).map((r) => r.status), ['new']);
    await env.sql(`INSERT INTO subscribers (msisdn) SELECT '8491301' || lpad(g::text, 4, '0') FROM generate_series(0, 9999) g`);
    await env.sql(`INSERT INTO mo_messages (link, smsc_id, msisdn, dest, text, state, received_at)
                   SELECT 'viettel', 'grown-' || g, '8491301' || lpad((g % 10000)::text, 4, '0'), '8079', 'A',
                          'processed', now() - interval '1 minute'
                     FROM generate_series(1, 40000) g`);
    await env.sql('ANALYZE mo_messages');
    const seq = async () => (await env.sql(
      "SELECT pg_stat_get_xact_numscans('mo_messages'::regclass)::int AS n"))[0].n;
    await env.sql('BEGIN');
    try {
      const q0 = await seq();
      const r = await prepare(['grown-7', 'new-1', ''], ['84913010007', '84913010008', '84913010009'], ['A', 'B', 'A']);
      assert.equal(await seq() - q0, 0, 'mo_messages read by index only');
      // grown-7 is stored; 84913010009 sent "A" 4 times in the last 10 minutes (loop_max 3)
      assert.deepEqual(r.map((x) => x.status), ['duplicate', 'new', 'looping']);
    } finally {
      await env.sql('ROLLBACK');
    }
  } finally {
    await env.stop();
  }
});

// The daemon's statements are prepared once per connection (core/store.c):
// each call after the first sends a name and parameters, not the text to
// parse, analyse and plan again. PostgreSQL's log (log_min_duration_statement
// = 0 for this database only) names what it ran. A migration that changes
// what a prepared statement returns makes the server refuse its plan
// (SQLSTATE 0A000, nothing run): the statement is prepared again and the call
// sent once more, so the daemon goes on without an error.
test('statements are prepared once per connection, and again when a migration changes their result', async () => {
  const env = await h.start({ daemon: false, conf: { gateway: { link_lock_interval: 1 } } });
  try {
    const [{ db }] = await env.sql('SELECT current_database() AS db');
    await env.sql(`ALTER DATABASE "${db}" SET log_min_duration_statement = 0`);
    const logFile = path.join(PGDIR, 'server.log');
    const from = fs.statSync(logFile).size;
    await env.startDaemon();
    const n = '84913000051';
    for (const text of ['HELP', 'EN', 'HOC 1']) {
      assert.equal(await env.sim.deliver({ from: n, to: '8079', text }), 0);
    }
    await env.waitFor(async () => (await env.sql(
      "SELECT count(*)::int AS c FROM mo_messages WHERE msisdn = $1 AND state = 'processed'", [n]))[0].c === 3,
    10000, 'the MOs to be processed');
    const pgLog = () => { const b = fs.readFileSync(logFile); return b.subarray(from).toString(); };
    await env.waitFor(async () => (pgLog().match(/execute sg\d+: SELECT \* FROM sg_mo_commit/g) || []).length >= 3,
      10000, 'the commits in the server log');
    const log = pgLog();
    assert.equal((log.match(/execute <unnamed>: SELECT \* FROM sg_mo_(prepare|commit)/g) || []).length, 0,
      'no MO batch statement sent unnamed');
    assert.ok((log.match(/parse sg\d+: SELECT \* FROM sg_mo_commit/g) || []).length <= 4,
      'prepared at most once per connection of the pool');

    // sg_instance_beat returns int instead of bigint, as a migration could make it
    const beats = async () => (await env.sql('SELECT heartbeat_at FROM instances'))[0].heartbeat_at.getTime();
    await env.waitFor(async () => /execute sg\d+: SELECT sg_instance_beat/.test(pgLog()), 10000, 'a prepared heartbeat');
    await env.sql('BEGIN');
    await env.sql('DROP FUNCTION sg_instance_beat(text, int)');
    await env.sql(`CREATE FUNCTION sg_instance_beat(p_name text, p_stale_s int) RETURNS int LANGUAGE plpgsql AS $$
                   BEGIN
                       INSERT INTO instances (name) VALUES (p_name)
                           ON CONFLICT (name) DO UPDATE SET heartbeat_at = now();
                       RETURN 0;
                   END $$`);
    await env.sql('COMMIT');
    const t0 = await beats();
    await env.waitFor(async () => await beats() > t0, 10000, 'a heartbeat after the change');
    assert.match(env.log(), /prepared statement went stale, preparing it again: SELECT sg_instance_beat/);
    assert.doesNotMatch(env.log(), /query failed/);
  } finally {
    await env.stop();
  }
});

// The heartbeat (019) looks for a dead instance's MTs only when an instance
// is dead: with none, mt_messages is not read at all.
test('the instance heartbeat reads no mt_messages when no instance is dead', async () => {
  const env = await h.start({});
  try {
    await env.sql("INSERT INTO mt_messages (msisdn, text, kind, priority, state, owner) SELECT '8491400' || g, 'x', 'api', 1, 'submitting', 'gone' FROM generate_series(1000, 1999) g");
    await env.sql("INSERT INTO instances (name, heartbeat_at) VALUES ('gone', now())");
    await env.sql('ANALYZE mt_messages');
    const beat = async () => {
      await env.sql('BEGIN');
      try {
        const [r] = await env.sql("SELECT sg_instance_beat('probe', 30) AS n");
        const [t] = await env.sql("SELECT seq_scan + coalesce(idx_scan, 0) AS reads FROM pg_stat_xact_user_tables WHERE relname = 'mt_messages'");
        return { n: Number(r.n), reads: Number(t.reads) };
      } finally {
        await env.sql('COMMIT');
      }
    };
    assert.deepEqual(await beat(), { n: 0, reads: 0 });
    await env.sql("UPDATE instances SET heartbeat_at = now() - interval '1 hour' WHERE name = 'gone'");
    const r = await beat();
    assert.equal(r.n, 1000, 'the dead instance\'s MTs are queued again');
    assert.equal((await env.sql("SELECT count(*)::int AS c FROM mt_messages WHERE owner = 'gone' AND state = 'queued' AND maybe_duplicate"))[0].c, 1000);
  } finally {
    await env.stop();
  }
});
