'use strict';
// USSD menus end to end (§3.3, §4.5): SMSC simulator in USSD mode -> skillgated
// -> PostgreSQL -> screens back as submit_sm with ussd_service_op and
// its_session_info, plus the HTTP callback POST /ussd when the HTTP API is built.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');
const { loadAnswers, parseQuizState } = require('./lib/content');

const answers = loadAnswers(h.ROOT, 'en');
// the route is added in gateway/http_api.c (its owner): test it once it calls ussd_http()
const HTTP_SRC = path.join(h.ROOT, 'gateway/http_api.c');
const HAVE_HTTP = fs.existsSync(HTTP_SRC) && fs.readFileSync(HTTP_SRC, 'utf8').includes('ussd_http(') &&
  process.env.SG_USSD_NO_HTTP !== '1';
let env;
let seq = 0;

test.before(async () => {
  env = await h.start({
    links: { viettel: { sim: { ussdMode: true } } },
    conf: { content: { ussd_idle_timeout: 5, ussd_total_timeout: 60 } },
    http: HAVE_HTTP,
  });
});
test.after(async () => { await env.stop(); });

function number() { return `8497${String(3000000 + (++seq) * 7907).slice(-7)}`; }

function ussdScreens(msisdn) {
  return env.sim.submits.filter((s) => s.to === msisdn && s.ussdServiceOp != null);
}
function smsTo(msisdn) {
  return env.sim.submits.filter((s) => s.to === msisdn && s.ussdServiceOp == null);
}
async function nextScreen(msisdn, n, what) {
  await env.waitFor(() => ussdScreens(msisdn).length >= n, 10000, what || `USSD screen ${n} to ${msisdn}`);
  return ussdScreens(msisdn)[n - 1];
}

// A dialog: begin() and answer() return the screen that came back.
function dialog(msisdn) {
  let n = 0;
  let session = null;
  return {
    async begin(code = '*8079#') {
      const r = await env.sim.ussdBegin({ from: msisdn, serviceCode: code });
      assert.equal(r.status, 0, 'deliver_sm_resp of the dial');
      session = r.session;
      return nextScreen(msisdn, ++n);
    },
    async answer(text) {
      const r = await env.sim.ussdAnswer({ from: msisdn, text, sessionNumber: session });
      assert.equal(r.status, 0, `deliver_sm_resp of "${text}"`);
      return nextScreen(msisdn, ++n);
    },
    async abort() {
      const r = await env.sim.ussdAnswer({ from: msisdn, text: '', sessionNumber: session, op: 0x81 });
      assert.equal(r.status, 0);
    },
    get session() { return session; },
  };
}

async function ussdState(msisdn) {
  const rows = await env.sql('SELECT state, ended_at FROM ussd_sessions WHERE msisdn = $1 ORDER BY updated_at DESC LIMIT 1', [msisdn]);
  return rows[0];
}
// "Q:<lang>:<bad>:<inputs>:<skill>:<ids>:<qi>:<score>"
async function quizOf(msisdn) {
  const p = (await ussdState(msisdn)).state.split(':');
  assert.equal(p[0], 'Q', `a USSD quiz is in progress (${p.join(':')})`);
  return { skill: Number(p[4]), ids: p[5].split(','), qi: Number(p[6]), score: Number(p[7]) };
}
const digit = (letter) => String('ABCD'.indexOf(letter) + 1);
const wrongDigit = (letter) => String((('ABCD'.indexOf(letter) + 1) % 4) + 1);

function assertFits(s) {
  assert.ok(s.text.length <= 160, `screen within 160 characters: ${s.text.length}`);
  assert.ok(!/[^\x20-\x7e\n]/.test(s.text), `screen unaccented: ${JSON.stringify(s.text)}`);
}

test('a full quiz by USSD: menus, 5 questions, end bit only on the last screen, result by SMS', async () => {
  const msisdn = number();
  const d = dialog(msisdn);
  const main = await d.begin();
  assert.match(main.text, /1 Kiem tra ky nang/);
  const menu = await d.answer('1');
  assert.match(menu.text, /3 Thanh toan/);
  let s = await d.answer('3');
  assert.match(s.text, /^1\/5 /);
  for (let i = 0; i < 5; i++) {
    const q = await quizOf(msisdn);
    assert.equal(q.skill, 3);
    assert.equal(q.qi, i);
    s = await d.answer(digit(answers.get(q.ids[q.qi])));
    if (i < 4) assert.match(s.text, new RegExp(`${i + 2}/5 `));
  }
  assert.match(s.text, /5\/5/);
  const screens = ussdScreens(msisdn);
  assert.equal(screens.length, 8);
  for (const x of screens.slice(0, -1)) {
    assertFits(x);
    assert.equal(x.itsEnd, false, 'no end bit before the last screen');
    assert.equal(x.ussdServiceOp, 2);
  }
  const last = screens[screens.length - 1];
  assertFits(last);
  assert.equal(last.itsEnd, true, 'end bit on the last screen');
  assert.equal(last.ussdServiceOp, 17);
  assert.equal(new Set(screens.map((x) => x.itsSessionInfo >> 8)).size, 1, 'one dialog id echoed');
  await env.waitFor(() => smsTo(msisdn).length >= 1, 10000, 'the result by SMS');
  assert.match(smsTo(msisdn)[0].text, /5\/5/);
  const ev = await env.sql("SELECT kind, value, passed, source FROM proficiency_events WHERE msisdn = $1", [msisdn]);
  assert.deepEqual(ev, [{ kind: 'quiz', value: 5, passed: true, source: 'ussd' }]);
  const st = await ussdState(msisdn);
  assert.ok(st.ended_at, 'dialog ended');
  const mo = await env.sql("SELECT count(*)::int AS n FROM mo_messages WHERE msisdn = $1 AND channel = 'ussd'", [msisdn]);
  assert.equal(mo[0].n, 8, 'every step committed as an MO');
  const mt = await env.sql("SELECT count(*)::int AS n FROM mt_messages WHERE msisdn = $1 AND kind = 'ussd' AND ussd_end", [msisdn]);
  assert.equal(mt[0].n, 1);
});

test('a shortcut dial goes straight to the quiz; 0 goes back, 00 to the main menu; invalid input', async () => {
  const msisdn = number();
  const d = dialog(msisdn);
  const s = await d.begin('*8079*1*3#');
  assert.match(s.text, /^1\/5 /);
  assert.equal((await quizOf(msisdn)).skill, 3);
  const back = await d.answer('0');
  assert.match(back.text, /3 Thanh toan/);
  const bad = await d.answer('9');
  assert.match(bad.text, /khong hop le/);
  const main = await d.answer('00');
  assert.match(main.text, /1 Kiem tra ky nang/);
  const lang = await d.answer('5');
  assert.match(lang.text, /English/);
  const en = await d.answer('2');
  assert.match(en.text, /1 Quiz/);
  const prog = await d.answer('3');
  assert.match(prog.text, /Skills done: none/);
  assert.equal(prog.itsEnd, false);
  const rows = await env.sql('SELECT language FROM subscribers WHERE msisdn = $1', [msisdn]);
  assert.equal(rows[0].language, 'en');
  await d.abort();
});

test('self-assessment by USSD records five self events with source ussd', async () => {
  const msisdn = number();
  const d = dialog(msisdn);
  await d.begin('*8079*2#');
  let s;
  for (let i = 0; i < 5; i++) s = await d.answer('3');
  assert.equal(s.itsEnd, true);
  const ev = await env.sql("SELECT count(*)::int AS n FROM proficiency_events WHERE msisdn = $1 AND kind = 'self' AND value = 2 AND source = 'ussd'", [msisdn]);
  assert.equal(ev[0].n, 5);
});

test('user abort ends the dialog; an interrupted quiz is sent by SMS', async () => {
  const msisdn = number();
  const d = dialog(msisdn);
  await d.begin('*8079*1*2#');
  const q = await quizOf(msisdn);
  await d.answer(digit(answers.get(q.ids[0])));
  await d.abort();
  await env.waitFor(async () => (await ussdState(msisdn)).ended_at, 10000, 'the dialog to end');
  await env.waitFor(() => smsTo(msisdn).length >= 1, 10000, 'the quiz so far by SMS');
  assert.match(smsTo(msisdn)[0].text, /1\/1/);
  assert.equal(ussdScreens(msisdn).length, 2, 'no screen after an abort');
});

test('idle timeout: final screen with the end bit, then the resident finishes the quiz by SMS', async () => {
  const msisdn = number();
  const d = dialog(msisdn);
  await d.begin('*8079*1*4#');
  const q = await quizOf(msisdn);
  await d.answer(digit(answers.get(q.ids[0])));
  const t0 = Date.now();
  const last = await nextScreen(msisdn, 3, 'the timeout screen');
  assert.ok(Date.now() - t0 >= 3000, 'not before the idle timeout');
  assert.equal(last.itsEnd, true);
  assert.match(last.text, /Het thoi gian/);
  await env.waitFor(() => smsTo(msisdn).length >= 1, 10000, 'the paused quiz by SMS');
  assert.match(smsTo(msisdn)[0].text, /2\/5/);
  const sub = await env.sql('SELECT flow_state FROM subscribers WHERE msisdn = $1', [msisdn]);
  const fq = parseQuizState(sub[0].flow_state);
  assert.ok(fq, `SMS flow continues the quiz: ${sub[0].flow_state}`);
  assert.equal(fq.skill, 4);
  assert.equal(fq.index, 1);
  assert.equal(fq.score, 1);
  // four answers by SMS finish the same quiz
  const sentAt = new Map();
  for (let i = 1; i < 5; i++) {
    const cur = parseQuizState((await env.sql('SELECT flow_state FROM subscribers WHERE msisdn = $1', [msisdn]))[0].flow_state);
    assert.equal(cur.index, i);
    const want = smsTo(msisdn).length + 1;
    const text = answers.get(cur.ids[i]);
    // the same text within [database] dedupe_window (1 s here) is a duplicate by design
    const since = Date.now() - (sentAt.get(text) || 0);
    if (since < 1100) await new Promise((r) => setTimeout(r, 1100 - since));
    sentAt.set(text, Date.now());
    assert.equal(await env.sim.deliver({ from: msisdn, to: '8079', text }), 0);
    await env.waitFor(() => smsTo(msisdn).length >= want, 10000, `SMS reply ${i}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await env.waitFor(async () => (await env.sql("SELECT 1 FROM proficiency_events WHERE msisdn = $1 AND kind = 'quiz' AND value = 5 AND passed", [msisdn])).length === 1, 10000, 'the quiz result');
});

test('total timeout: the dialog ends after ussd_total_timeout although the resident keeps answering', async () => {
  // a daemon of its own: a short total timeout, an idle timeout that never fires here
  const env2 = await h.start({
    links: { viettel: { sim: { ussdMode: true } } },
    conf: { content: { ussd_idle_timeout: 60, ussd_total_timeout: 5 } }, // 5: the lowest allowed
  });
  try {
    const msisdn = number();
    const screens = () => env2.sim.submits.filter((s) => s.to === msisdn && s.ussdServiceOp != null);
    const r = await env2.sim.ussdBegin({ from: msisdn, serviceCode: '*8079#' });
    assert.equal(r.status, 0);
    const t0 = Date.now();
    await env2.waitFor(() => screens().length >= 1, 10000, 'the main menu');
    for (const text of ['1', '0']) { // quiz menu, back: activity before the deadline
      await new Promise((res) => setTimeout(res, 1500));
      const n = screens().length;
      assert.equal((await env2.sim.ussdAnswer({ from: msisdn, text, sessionNumber: r.session })).status, 0);
      await env2.waitFor(() => screens().length > n, 10000, `the screen after "${text}"`);
      assert.equal(screens()[n].itsEnd, false);
    }
    await env2.waitFor(() => screens().some((s) => s.itsEnd), 10000, 'the timeout screen');
    assert.ok(Date.now() - t0 >= 4500, `not before the total timeout (${Date.now() - t0} ms)`);
    const last = screens()[screens().length - 1];
    assert.equal(last.itsEnd, true);
    assert.match(last.text, /Het thoi gian/);
    assert.equal(screens().length, 4, 'menu, quiz menu, menu, timeout');
    await env2.waitFor(async () => (await env2.sql('SELECT ended_at FROM ussd_sessions WHERE msisdn = $1', [msisdn]))[0]?.ended_at, 10000, 'the dialog to end in the database');
  } finally {
    await env2.stop();
  }
});

test('1,000 concurrent dialogs are all answered', async (t) => {
  const N = 1000;
  const nums = Array.from({ length: N }, () => number());
  const t0 = Date.now();
  const sessions = await Promise.all(nums.map((m, i) => env.sim.ussdBegin({ from: m, serviceCode: '*8079#', sessionNumber: (i % 255) + 1 })));
  assert.ok(sessions.every((r) => r.status === 0), 'every dial acknowledged');
  await env.waitFor(() => nums.every((m) => ussdScreens(m).length >= 1), 30000, 'a menu for every dial');
  const res = await Promise.all(nums.map((m, i) => env.sim.ussdAnswer({ from: m, text: '3', sessionNumber: (i % 255) + 1 })));
  assert.ok(res.every((r) => r.status === 0));
  await env.waitFor(() => nums.every((m) => ussdScreens(m).length >= 2), 30000, 'a second screen for every dialog');
  for (const m of nums) assert.match(ussdScreens(m)[1].text, /Ky nang da dat/);
  const rows = await env.sql("SELECT count(DISTINCT msisdn)::int AS n FROM ussd_sessions WHERE msisdn = ANY($1) AND state LIKE 'P:%'", [nums]);
  assert.equal(rows[0].n, N);
  t.diagnostic(`1000 dialogs, 2 steps each: ${Date.now() - t0} ms`);
  // close them so the idle timer does not send 1000 timeout screens during later tests
  await Promise.all(nums.map((m, i) => env.sim.ussdAnswer({ from: m, text: '', sessionNumber: (i % 255) + 1, op: 0x81 })));
});

test('HTTP callback POST /ussd: CON/END and 400 on malformed requests', { skip: !HAVE_HTTP && 'gateway/http_api.c has no /ussd route yet' }, async () => {
  const msisdn = number();
  // the aggregator holds a partner token like any other API client
  const made = await env.skillctl(['token', 'create', '--role', 'partner', '--name', 'aggregator']);
  assert.equal(made.code, 0, made.stderr);
  const token = made.stdout.trim().split(/\s+/).pop();
  const anon = await fetch(`${env.http}/ussd`, { method: 'POST', body: 'sessionId=x' });
  assert.equal(anon.status, 401, 'no token, no USSD');
  const post = async (fields) => {
    const r = await fetch(`${env.http}/ussd`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${token}` },
      body: new URLSearchParams(fields).toString(),
    });
    return { status: r.status, body: await r.text(), type: r.headers.get('content-type') || '' };
  };
  const base = { sessionId: `ATx${seq}`, serviceCode: '*8079#', phoneNumber: `+${msisdn}`, networkCode: '45204' };
  let r = await post({ ...base, text: '' });
  assert.equal(r.status, 200);
  assert.match(r.type, /text\/plain/);
  assert.match(r.body, /^CON .*1 Kiem tra ky nang/s);
  r = await post({ ...base, text: '1' });
  assert.match(r.body, /^CON Chon ky nang/);
  r = await post({ ...base, text: '1*3' });
  assert.match(r.body, /^CON 1\/5 /);
  for (let i = 0; i < 5; i++) {
    const q = await quizOf(msisdn);
    const parts = ['1', '3'];
    for (let k = 0; k < i; k++) parts.push('1');
    parts.push(i < 4 ? wrongDigit(answers.get(q.ids[q.qi])) : digit(answers.get(q.ids[q.qi])));
    // inputs so far, as aggregators send them (earlier answers are not re-applied)
    r = await post({ ...base, text: parts.join('*') });
  }
  assert.match(r.body, /^END /);
  r = await post({ sessionId: '', serviceCode: '*8079#', phoneNumber: msisdn, text: '' });
  assert.equal(r.status, 400);
  r = await post({ sessionId: 'ATbad', serviceCode: '*8079#', phoneNumber: 'not-a-phone', text: '' });
  assert.equal(r.status, 400);
  const none = await env.sql("SELECT count(*)::int AS n FROM ussd_sessions WHERE session_key = 'ATbad'");
  assert.equal(none[0].n, 0, 'no session for a malformed request');
});

test('a burst of 300 simultaneous HTTP dialogs: every screen right, every MO and state committed', { skip: !HAVE_HTTP && 'gateway/http_api.c has no /ussd route yet' }, async () => {
  // steps of many dialogs share one commit (sql/008_ussd_batch.sql): check each
  // answer and the database, not the timing
  const N = 300;
  const made = await env.skillctl(['token', 'create', '--role', 'partner', '--name', 'burst']);
  assert.equal(made.code, 0, made.stderr);
  const token = made.stdout.trim().split(/\s+/).pop();
  const post = async (fields) => {
    const r = await fetch(`${env.http}/ussd`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${token}` },
      body: new URLSearchParams(fields).toString(),
    });
    return { status: r.status, body: await r.text() };
  };
  const dialogs = Array.from({ length: N }, (_, i) => ({
    msisdn: number(), sessionId: `burst-${seq}-${i}`,
    // a third each: progress, quiz menu, language menu
    pick: ['3', '1', '5'][i % 3],
  }));
  const want = { 3: /^CON .*Ky nang da dat/s, 1: /^CON Chon ky nang/, 5: /^CON .*English/s };
  const results = await Promise.all(dialogs.map(async (d) => {
    const base = { sessionId: d.sessionId, serviceCode: '*8079#', phoneNumber: `+${d.msisdn}`, networkCode: '45204' };
    const first = await post({ ...base, text: '' });
    const second = await post({ ...base, text: d.pick });
    return { first, second };
  }));
  results.forEach(({ first, second }, i) => {
    assert.equal(first.status, 200, `dialog ${i}: first step ${first.body}`);
    assert.match(first.body, /^CON .*1 Kiem tra ky nang/s, `dialog ${i}: main menu`);
    assert.equal(second.status, 200, `dialog ${i}: second step ${second.body}`);
    assert.match(second.body, want[dialogs[i].pick], `dialog ${i}: screen of "${dialogs[i].pick}"`);
  });
  const nums = dialogs.map((d) => d.msisdn);
  const mo = await env.sql("SELECT msisdn, array_agg(text ORDER BY id) AS texts FROM mo_messages WHERE msisdn = ANY($1) AND channel = 'http' AND state = 'processed' GROUP BY msisdn", [nums]);
  assert.equal(mo.length, N, 'MO rows of every dialog');
  const moBy = new Map(mo.map((r) => [r.msisdn, r.texts]));
  const states = await env.sql("SELECT msisdn, session_key, state, ended_at FROM ussd_sessions WHERE link = 'http' AND msisdn = ANY($1)", [nums]);
  assert.equal(states.length, N, 'a session row for every dialog');
  const stBy = new Map(states.map((r) => [r.session_key, r]));
  const letter = { 3: 'P', 1: 'K', 5: 'L' };
  for (const d of dialogs) {
    assert.deepEqual(moBy.get(d.msisdn), ['', d.pick], `MO rows of ${d.msisdn}, in order`);
    const st = stBy.get(d.sessionId);
    assert.ok(st, `session ${d.sessionId}`);
    assert.equal(st.state, `${letter[d.pick]}:vi:0:1`, `state of ${d.sessionId}`);
    assert.equal(st.ended_at, null);
  }
  const mt = await env.sql("SELECT count(*)::int AS n FROM mt_messages WHERE msisdn = ANY($1) AND kind = 'ussd' AND state = 'delivered' AND owner LIKE '%/ussd'", [nums]);
  assert.equal(mt[0].n, 2 * N, 'both screens of every dialog recorded as delivered');
  const subs = await env.sql('SELECT count(*)::int AS n FROM subscribers WHERE msisdn = ANY($1) AND last_mo_at IS NOT NULL', [nums]);
  assert.equal(subs[0].n, N, 'a subscriber row for every number');
});

test('two dialogs of one number in the same burst keep their own state and order', { skip: !HAVE_HTTP && 'gateway/http_api.c has no /ussd route yet' }, async () => {
  const msisdn = number();
  const made = await env.skillctl(['token', 'create', '--role', 'partner', '--name', 'twin']);
  const token = made.stdout.trim().split(/\s+/).pop();
  const post = (fields) => fetch(`${env.http}/ussd`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${token}` },
    body: new URLSearchParams({ serviceCode: '*8079#', phoneNumber: msisdn, networkCode: '45204', ...fields }).toString(),
  }).then((r) => r.text());
  const a = `twinA-${seq}`;
  const b = `twinB-${seq}`;
  await Promise.all([post({ sessionId: a, text: '' }), post({ sessionId: b, text: '' })]);
  // A: self-assessment, first answer; B: language -> English
  const [ra, rb] = await Promise.all([post({ sessionId: a, text: '2' }), post({ sessionId: b, text: '5' })]);
  assert.match(ra, /^CON /);
  assert.match(rb, /English/);
  const [ra2, rb2] = await Promise.all([post({ sessionId: a, text: '2*4' }), post({ sessionId: b, text: '5*2' })]);
  assert.match(ra2, /^CON /);
  assert.match(rb2, /^CON .*1 Quiz/s);
  const rows = await env.sql('SELECT session_key, state FROM ussd_sessions WHERE msisdn = $1 ORDER BY session_key', [msisdn]);
  assert.deepEqual(rows.map((r) => r.session_key), [a, b]);
  assert.match(rows[0].state, /^S:vi:0:2:2$/);
  assert.match(rows[1].state, /^M:en:0:2$/);
  const ev = await env.sql("SELECT kind, value, source FROM proficiency_events WHERE msisdn = $1", [msisdn]);
  assert.deepEqual(ev, [{ kind: 'self', value: 3, source: 'ussd' }]);
  const sub = await env.sql('SELECT language FROM subscribers WHERE msisdn = $1', [msisdn]);
  assert.equal(sub[0].language, 'en');
});
