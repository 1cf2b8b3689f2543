'use strict';
// Resident flows end to end: node-smpp SMSC -> skillgated -> PostgreSQL -> reply.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const { loadField, loadAnswers, parseQuizState } = require('./lib/content');

const answers = loadAnswers(h.ROOT, 'en');
const WRONG = { A: 'B', B: 'C', C: 'D', D: 'A' };
let env;
let seq = 0;

test.before(async () => { env = await h.start(); });
test.after(async () => { await env.stop(); });

function number() { return `8491${String(2000000 + (++seq) * 7919).slice(-7)}`; }

// Sends an MO, waits until it is processed and its replies are accepted by
// the SMSC, and returns the reply texts (from the outbox, in order).
const lastSent = new Map();
async function say(msisdn, text, e = env) {
  // the same text from one number within [database] dedupe_window (1 s in the
  // harness) is a duplicate by design: pace repeated answers like a person would
  const key = `${msisdn} ${text}`;
  const since = Date.now() - (lastSent.get(key) || 0);
  if (since < 1100) await new Promise((r) => setTimeout(r, 1100 - since));
  lastSent.set(key, Date.now());
  const [{ max }] = await e.sql('SELECT coalesce(max(id), 0)::int AS max FROM mo_messages WHERE msisdn = $1', [msisdn]);
  const st = await e.sim.deliver({ from: msisdn, to: '8079', text });
  assert.equal(st, 0, `deliver_sm_resp status for "${text}"`);
  let mo;
  await e.waitFor(async () => {
    mo = await e.sql('SELECT id, state FROM mo_messages WHERE msisdn = $1 AND id > $2', [msisdn, max]);
    return mo.length > 0 && mo.every((r) => r.state !== 'received');
  }, 10000, `"${text}" to be processed`);
  let mts;
  await e.waitFor(async () => {
    mts = await e.sql('SELECT text, state FROM mt_messages WHERE mo_id = ANY($1) ORDER BY id', [mo.map((r) => r.id)]);
    return mts.every((r) => ['submitted', 'delivered'].includes(r.state));
  }, 10000, `the replies to "${text}" to be submitted`);
  return mts.map((r) => r.text);
}

async function state(msisdn, e = env) {
  const rows = await e.sql('SELECT flow_state, language, opted_out FROM subscribers WHERE msisdn = $1', [msisdn]);
  return rows[0];
}

async function takeQuiz(msisdn, skill, correct) {
  await say(msisdn, `QUIZ ${skill}`);
  let last;
  for (let i = 0; i < 5; i++) {
    const q = parseQuizState((await state(msisdn)).flow_state);
    assert.ok(q, 'a quiz is in progress');
    const right = answers.get(q.ids[q.index]);
    assert.ok(right, `answer known for ${q.ids[q.index]}`);
    const answer = i < correct ? right : WRONG[right];
    const replies = await say(msisdn, answer);
    last = replies[replies.length - 1];
  }
  return last;
}

test('an MO is committed before its deliver_sm_resp and answered from the outbox', async () => {
  const n = number();
  const [reply] = await say(n, 'HELP');
  assert.match(reply, /HOC|QUIZ/);
  const mo = await env.sql('SELECT state FROM mo_messages WHERE msisdn = $1', [n]);
  assert.deepEqual(mo.map((r) => r.state), ['processed']);
  await env.waitFor(async () => (await env.sql("SELECT state FROM mt_messages WHERE msisdn = $1", [n]))
    .every((r) => r.state === 'delivered'), 10000, 'the receipt to mark the reply delivered');
});

test('a full quiz passed records proficiency with source sms', async () => {
  const n = number();
  await say(n, 'EN');
  const last = await takeQuiz(n, 3, 5);
  assert.match(last, /passed/i);
  const p = await env.sql("SELECT best_quiz, quiz_passed_at IS NOT NULL AS passed, quiz_source FROM proficiency WHERE msisdn = $1 AND skill = 'payment'", [n]);
  assert.deepEqual(p, [{ best_quiz: 5, passed: true, quiz_source: 'sms' }]);
  const ev = await env.sql("SELECT kind, value, passed, source FROM proficiency_events WHERE msisdn = $1", [n]);
  assert.deepEqual(ev, [{ kind: 'quiz', value: 5, passed: true, source: 'sms' }]);
  assert.equal((await state(n)).flow_state, '');
});

test('a failed quiz explains wrong answers and is recorded as failed', async () => {
  const n = number();
  await say(n, 'EN');
  await say(n, 'QUIZ 4');
  const q = parseQuizState((await state(n)).flow_state);
  const [wrongReply] = await say(n, WRONG[answers.get(q.ids[0])]);
  assert.match(wrongReply, /answer is [ABCD]/);
  for (let i = 1; i < 5; i++) {
    const s = parseQuizState((await state(n)).flow_state);
    await say(n, WRONG[answers.get(s.ids[s.index])]);
  }
  const p = await env.sql("SELECT best_quiz, quiz_passed_at FROM proficiency WHERE msisdn = $1 AND skill = 'safety'", [n]);
  assert.equal(p[0].best_quiz, 0);
  assert.equal(p[0].quiz_passed_at, null);
});

test('Vietnamese keywords with and without diacritics start the same quiz', async () => {
  const a = number(), b = number();
  const ra = await say(a, 'HỌC 2');
  const rb = await say(b, 'hoc 2');
  const intro = (r) => r[0].split('\n')[0]; // the first question follows, drawn at random
  assert.equal(intro(ra), intro(rb));
  assert.match(ra[0], /Mua sắm/);
  assert.equal(parseQuizState((await state(a)).flow_state).skill, 2);
});

test('STOP in the middle of a quiz ends it and nothing more is sent; START opts back in', async () => {
  const n = number();
  await say(n, 'QUIZ 1');
  const [bye] = await say(n, 'STOP');
  assert.ok(bye.length > 0);
  const s = await state(n);
  assert.equal(s.opted_out, true);
  assert.equal(s.flow_state, '');
  const before = env.sim.messages().filter((m) => m.to === n).length;
  assert.deepEqual(await say(n, 'A'), []);
  assert.deepEqual(await say(n, 'HELP'), []);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(env.sim.messages().filter((m) => m.to === n).length, before, 'no reply while opted out');
  await say(n, 'START');
  assert.equal((await state(n)).opted_out, false);
});

test('self-assessment records one level per skill', async () => {
  const n = number();
  await say(n, 'EN');
  await say(n, 'RATE');
  for (const level of ['2', '3', '1', '0']) await say(n, level); // all different: no dedupe
  const last = await say(n, '2');
  assert.ok(last.length >= 1);
  const rows = await env.sql('SELECT skill, self_level, self_source FROM proficiency WHERE msisdn = $1 ORDER BY skill', [n]);
  assert.equal(rows.length, 5);
  assert.ok(rows.every((r) => r.self_source === 'sms'));
  assert.equal(rows.find((r) => r.skill === 'payment').self_level, 1);
});

test('joining a household; an unknown code changes nothing', async () => {
  await env.sql("INSERT INTO households (code, commune_code, village) VALUES ('HN-0001', '00001', 'Tổ 5')");
  const n = number();
  await say(n, 'EN');
  const [unknown] = await say(n, 'HOME NOPE-42');
  assert.match(unknown, /NOPE-42|not found|unknown|no household/i);
  assert.equal((await env.sql('SELECT household_id FROM subscribers WHERE msisdn = $1', [n]))[0].household_id, null);
  await say(n, 'HOME HN-0001');
  const rows = await env.sql('SELECT h.code FROM subscribers s JOIN households h ON h.id = s.household_id WHERE s.msisdn = $1', [n]);
  assert.deepEqual(rows, [{ code: 'HN-0001' }]);
});

test('the same deliver_sm twice (same SMSC id) is acknowledged twice and answered once', async () => {
  const n = number();
  const before = env.sim.messages().filter((m) => m.to === n).length;
  assert.equal(await env.sim.deliver({ from: n, to: '8079', text: 'HELP', messageId: 'dup-1' }), 0);
  assert.equal(await env.sim.deliver({ from: n, to: '8079', text: 'HELP', messageId: 'dup-1' }), 0);
  await env.sim.waitFor(() => env.sim.messages().filter((m) => m.to === n).length > before, 5000);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(env.sim.messages().filter((m) => m.to === n).length, before + 1);
  assert.equal((await env.sql('SELECT count(*)::int AS n FROM mo_messages WHERE msisdn = $1', [n]))[0].n, 1);
});

// The duplicate check finds an MO by its SMSC id through the partial unique
// index (link, smsc_id) WHERE smsc_id <> ''; without that predicate in the
// lookup every MO carrying an id scanned the whole of mo_messages. The
// function is PL/pgSQL (no EXPLAIN of its statements): the transaction's own
// table statistics say how mo_messages was read.
test('the duplicate check by SMSC id is an index lookup, not a scan of mo_messages', async () => {
  await env.sql('BEGIN');
  try {
    await env.sql("SELECT * FROM sg_mo_prepare(ARRAY['viettel'], ARRAY['dup-2'], ARRAY['84912000001'], ARRAY['HELP'], 0, 10, 60)");
    const [t] = await env.sql("SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'mo_messages'");
    assert.equal(Number(t.seq_scan), 0, 'sequential scans of mo_messages');
    assert.ok(Number(t.idx_scan) >= 2, `index scans of mo_messages: ${t.idx_scan}`);
  } finally {
    await env.sql('ROLLBACK');
  }
});

// A number's first MO creates its subscriber row; after that the daemon marks
// the number "known" (its snapshot found the row) and sg_mo_commit does not
// propose it for insertion again (026). A BEFORE INSERT trigger sees every
// row proposed, conflicting ones included.
test('the daemon proposes a number for insertion at its first MO only', async () => {
  const n = number();
  await env.sql('CREATE TABLE t_sub_inserts (msisdn text)');
  await env.sql(`CREATE FUNCTION t_sub_inserts_trg() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN INSERT INTO t_sub_inserts VALUES (NEW.msisdn); RETURN NEW; END $$`);
  await env.sql('CREATE TRIGGER t_sub_inserts BEFORE INSERT ON subscribers FOR EACH ROW EXECUTE FUNCTION t_sub_inserts_trg()');
  try {
    await say(n, 'EN');
    await say(n, 'HELP');
    await say(n, 'QUIZ 2');
    const rows = await env.sql('SELECT msisdn FROM t_sub_inserts WHERE msisdn = $1', [n]);
    assert.equal(rows.length, 1, 'proposed once, at the first MO');
    assert.equal((await state(n)).language, 'en');
  } finally {
    await env.sql('DROP TRIGGER t_sub_inserts ON subscribers');
    await env.sql('DROP FUNCTION t_sub_inserts_trg() CASCADE');
    await env.sql('DROP TABLE t_sub_inserts');
  }
});

test('a household becomes covered when a member passes the last missing skill', async () => {
  await env.sql("INSERT INTO households (code, commune_code, village) VALUES ('HN-0777', '00004', 'Tổ 7')");
  const a = number(), b = number();
  for (const n of [a, b]) {
    await say(n, 'EN');
    await say(n, 'HOME HN-0777');
  }
  // member a is already proficient in skills 1-4 (self level 2 and quiz passed), b in nothing
  await env.sql(`INSERT INTO proficiency (msisdn, skill, self_level, quiz_passed_at, proficient)
                 SELECT $1, code, 2, now(), true FROM skills WHERE position <= 4`, [a]);
  await env.sql(`UPDATE proficiency SET self_level = self_level WHERE msisdn = $1`, [a]); // fire triggers
  const covered = async () => (await env.sql(`SELECT c.covered FROM coverage_households c
                     JOIN households h ON h.id = c.household_id WHERE h.code = 'HN-0777'`))[0]?.covered ?? false;
  assert.equal(await covered(), false);
  const [statusBefore] = await say(b, 'STATUS');
  assert.ok(statusBefore.length > 0);
  // a rates skill 5 at level 2 and passes its quiz: proficient in all five
  await say(a, 'RATE');
  for (const level of ['3', '3', '3', '3', '2']) await say(a, level);
  const last = await takeQuiz(a, 5, 5);
  assert.match(last, /passed|5 digital skills/i);
  assert.equal(await covered(), true);
  const replies = await say(b, 'STATUS');
  assert.match(replies.join(' '), /HN-0777[^.]*all 5|all 5[^.]*HN-0777|covered|HN-0777.*5 digital skills/i);
  const cov = await env.skillctl(['report', 'coverage', '--level', 'commune', '--parent', '001', '--format', 'json']);
  assert.equal(cov.code, 0, cov.stderr);
  const row = JSON.parse(cov.stdout).find((r) => r.code === '00004');
  assert.equal(row.covered, 1);
});

// A wrong answer's explanation and the next question: one concatenated message when every link
// takes it (max_segments 6 by default), two messages when a link takes fewer parts than the join.
async function wrongAnswerMessages(e, n) {
  await say(n, 'HOC 4', e);
  const q = parseQuizState((await state(n, e)).flow_state);
  const before = e.sim.messages().length;
  const texts = await say(n, WRONG[answers.get(q.ids[0])], e);
  let mts;
  await e.waitFor(async () => {
    mts = await e.sql(`SELECT m.text, m.state FROM mt_messages m JOIN mo_messages o ON o.id = m.mo_id
                       WHERE o.msisdn = $1 AND o.text <> 'HOC 4' ORDER BY m.id`, [n]);
    return mts.length === texts.length && mts.every((r) => r.state === 'delivered');
  }, 10000, 'the replies to the wrong answer, delivered');
  await e.waitFor(() => e.sim.messages().length >= before + mts.length, 10000, 'the replies on the air');
  const onAir = e.sim.messages().slice(before).filter((m) => m.to === n);
  return { mts, onAir, id: q.ids[0] };
}

test('a wrong answer gets its explanation and the next question in one message, apart on a link of 3 parts', async () => {
  const why = loadField(h.ROOT, 'vi', 'why');
  const n = number();
  const one = await wrongAnswerMessages(env, n);
  assert.equal(one.mts.length, 1, 'one reply row');
  assert.match(one.mts[0].text, /^Chưa đúng, đáp án là [ABCD]\. /);
  assert.ok(one.mts[0].text.includes(`${why.get(one.id)}\n2/5 `), 'the explanation, then the next question on its own line');
  assert.equal(one.onAir.length, 1, 'one message on the air');
  assert.equal(one.onAir[0].text, one.mts[0].text);
  assert.ok(one.onAir[0].parts >= 2 && one.onAir[0].parts <= 6, `concatenated parts: ${one.onAir[0].parts}`);

  // On a link of 3 parts (66 UCS-2 characters each with a 16-bit UDH) the join fits only when the
  // explanation and the question are short: a quiz is drawn until one needs more, and every draw is
  // checked against the rule.
  const e3 = await h.start({ links: { viettel: { conf: { max_segments: 3 } } } });
  try {
    let sawApart = false;
    for (let i = 0; i < 10 && !sawApart; i++) {
      const r = await wrongAnswerMessages(e3, number());
      // the rule (flow.h), in UCS-2 parts of 66 characters (Vietnamese text is all in the BMP):
      // joined when it takes at most 3 parts and no more than the two apart
      const joined = r.mts.map((m) => m.text).join('\n');
      const cut = joined.indexOf('\n2/5 ');
      const parts = (t) => (t.length <= 70 ? 1 : Math.ceil(t.length / 66));
      const both = parts(joined);
      const fits = both <= 3 && both <= parts(joined.slice(0, cut)) + parts(joined.slice(cut + 1));
      assert.equal(r.mts.length, fits ? 1 : 2, `${joined.length} characters`);
      assert.match(r.mts[0].text, /^Chưa đúng, đáp án là [ABCD]\. /);
      if (!fits) assert.match(r.mts[1].text, /^2\/5 /);
      assert.equal(r.onAir.length, r.mts.length);
      for (const m of r.onAir) assert.ok(m.parts <= 3, `at most 3 parts: ${m.parts}`);
      sawApart = !fits;
    }
    assert.ok(sawApart, 'a draw that needs more than 3 parts');
  } finally {
    await e3.stop();
  }
});
