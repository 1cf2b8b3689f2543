'use strict';
// Text and receipts end to end (issue 4): Vietnamese UCS-2 long messages and
// their folded GSM form, receipts matched per part (also early, with mixed id
// bases, and without esm_class 0x04), concatenated and UCS-2 MO.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const { parseQuizState } = require('./lib/content');

// Vietnamese, 152 characters: 3 UCS-2 segments of at most 67, or 1 GSM-7 message once folded.
const VI = 'Xin chào! Hôm nay bạn sẽ học cách thanh toán an toàn bằng điện thoại. ' +
  'Đừng chia sẻ mã OTP với bất kỳ ai, kể cả người tự xưng là nhân viên ngân hàng nhé.';
const fold = (t) => t.normalize('NFD').replace(/[\u0300-\u036f]/g, '').replace(/đ/g, 'd').replace(/Đ/g, 'D');

let env;
let seqNo = 0;
function number(prefix) { return `${prefix}${String(4000000 + (++seqNo) * 7919).slice(-7)}`; }

test.before(async () => {
  env = await h.start({
    links: {
      viet: { sim: {}, conf: { prefixes: '8496', default_route: 'yes' } },
      fold: { sim: {}, conf: { prefixes: '8491', default_route: 'no', text: 'fold' } },
      early: { sim: { receiptBeforeResp: true }, conf: { prefixes: '8497', default_route: 'no' } },
      // hex message_id in submit_sm_resp (and in receipted_message_id), decimal "id:" in the receipt text
      hexdec: { sim: { idBase: 'hex', dlrIdBase: 'dec' }, conf: { prefixes: '8498', default_route: 'no', submit_id_base: 'hex', dlr_id_base: 'decimal' } },
      // receipts sent by the test itself
      manual: { sim: { receipts: false, idBase: 'hex' }, conf: { prefixes: '8486', default_route: 'no', submit_id_base: 'hex', dlr_id_base: 'decimal' } },
      // receipts encoded as raw bytes by the simulator, as in the bench
      raw: { sim: { rawReceipts: true }, conf: { prefixes: '8432', default_route: 'no' } },
    },
    http: true,
  });
});
test.after(async () => {
  await env.stop();
  const log = env.log();
  assert.doesNotMatch(log, /ERROR: (Address|Leak)Sanitizer|runtime error:/, 'no sanitizer report');
});

async function queueMt(to, text) {
  const [r] = await env.sql("INSERT INTO mt_messages (msisdn, text, kind, priority) VALUES ($1, $2, 'api', 0) RETURNING id", [to, text]);
  return Number(r.id);
}

async function waitMt(id, state, ms = 10000) {
  let row;
  try {
    await env.waitFor(async () => {
      [row] = await env.sql('SELECT state, nparts, parts_ok, parts_delivered, link FROM mt_messages WHERE id = $1', [id]);
      return row && row.state === state;
    }, ms, `MT ${id} to be ${state}`);
  } catch (e) {
    e.message += ` (now ${JSON.stringify(row)})\n${env.log().slice(-2000)}`;
    throw e;
  }
  return row;
}

async function parts(id) {
  return env.sql('SELECT part, state, smsc_id FROM mt_segments WHERE mt_id = $1 ORDER BY part', [id]);
}

test('a Vietnamese 3-part UCS-2 message: data_coding 8, UDH parts, reassembled equal, three receipts matched', async () => {
  const sim = env.sims.viet;
  const n = number('8496');
  const id = await queueMt(n, VI);
  const row = await waitMt(id, 'delivered');
  assert.equal(row.link, 'viet');
  assert.equal(row.nparts, 3);
  assert.equal(row.parts_delivered, 3);
  const subs = sim.submits.filter((s) => s.to === n);
  assert.equal(subs.length, 3);
  for (const [i, s] of subs.entries()) {
    assert.equal(s.dataCoding, 8, 'UCS-2');
    assert.equal(s.esmClass & 0x40, 0x40, 'UDHI set');
    assert.deepEqual({ total: s.sar.total, seq: s.sar.seq, bits: s.sar.bits }, { total: 3, seq: i + 1, bits: 8 });
    assert.ok([...s.text].length <= 67, 'at most 67 UCS-2 characters per part');
    assert.equal(s.registeredDelivery & 1, 1, 'a receipt requested on every segment');
  }
  assert.ok(subs.every((s) => s.sar.ref === subs[0].sar.ref), 'one reference');
  const msgs = sim.messages().filter((m) => m.to === n);
  assert.equal(msgs.length, 1);
  const [{ text }] = await env.sql('SELECT text FROM mt_messages WHERE id = $1', [id]);
  assert.equal(msgs[0].text, text);
  assert.equal(msgs[0].text, VI);
  const p = await parts(id);
  assert.deepEqual(p.map((x) => x.state), ['delivered', 'delivered', 'delivered']);
  assert.deepEqual(p.map((x) => x.smsc_id), subs.map((s) => String(parseInt(s.messageId, 16))), 'hex ids normalised');
});

// Segments and receipts that arrive together are written once: the message is
// final at once and keeps its segments' SMSC ids itself (no part rows); a
// message whose receipts come later is tracked part by part until final.
test('a message delivered within one batch keeps its SMSC ids on its row; receipts that come later are tracked in mt_parts', async () => {
  const n = number('8496');
  const id = await queueMt(n, VI);
  await waitMt(id, 'delivered');
  const subs = env.sims.viet.submits.filter((s) => s.to === n);
  const [m] = await env.sql('SELECT smsc_ids FROM mt_messages WHERE id = $1', [id]);
  assert.deepEqual(m.smsc_ids, subs.map((s) => String(parseInt(s.messageId, 16))), 'the ids, in part order');
  assert.equal((await env.sql('SELECT count(*)::int AS n FROM mt_parts WHERE mt_id = $1', [id]))[0].n, 0, 'no part rows');

  const sim = env.sims.manual;
  const late = number('8486');
  const id2 = await queueMt(late, VI);
  await waitMt(id2, 'submitted');
  const tracked = await env.sql('SELECT part, state FROM mt_parts WHERE mt_id = $1 ORDER BY part', [id2]);
  assert.deepEqual(tracked.map((x) => x.state), ['submitted', 'submitted', 'submitted'], 'the mapping kept until a final state');
  for (const s of sim.submits.filter((x) => x.to === late)) {
    assert.equal(await sim.deliver({ from: late, to: '8079', text: receiptText(String(parseInt(s.messageId, 16)), 'DELIVRD'), esmClass: 4 }), 0);
  }
  await waitMt(id2, 'delivered');
  assert.deepEqual((await parts(id2)).map((x) => x.state), ['delivered', 'delivered', 'delivered']);
  assert.equal((await env.sql('SELECT smsc_ids FROM mt_messages WHERE id = $1', [id2]))[0].smsc_ids, null);
});

// The daemon sends the messages whole and delivered in a batch as one row
// each (018). One whose row is not as the fast path expects (here a part
// was recorded already) still gets every segment and receipt, part by part.
test('sg_mt_outcomes: whole-and-delivered rows are written once; one whose part was recorded already goes part by part', async () => {
  const ins = "INSERT INTO mt_messages (msisdn, text, kind, state, owner, nparts, parts_ok) VALUES ($1, 'x', 'api', 'submitting', 'sqltest', $2, $3) RETURNING id::int";
  const [a] = await env.sql(ins, [number('8433'), 0, 0]);
  const [b] = await env.sql(ins, [number('8433'), 2, 1]);
  const [c] = await env.sql(ins, [number('8433'), 0, 0]);
  await env.sql("INSERT INTO mt_parts (mt_id, part, link, smsc_id) VALUES ($1, 1, 'sqlt', 'B-1')", [b.id]);
  // a: 1 part, b: 2 parts (goes part by part), c: 3 parts; each message's
  // ids and errors are read at its own offset in f_smsc / f_err (020)
  const [r] = await env.sql(`SELECT sg_mt_outcomes('{}'::bigint[], '{}'::int[], '{}'::int[], '{}'::text[], '{}'::int[], '{}'::text[], '{}'::boolean[],
      '{}'::text[], '{}'::text[], '{}'::int[], '{}'::int[],
      $1::bigint[], '{1,2,3}'::int[], '{sqlt,sqlt,sqlt}'::text[], '{A-1,B-1,B-2,C-1,C-2,C-3}'::text[],
      '{0,NULL,7,NULL,NULL,NULL}'::int[]) AS parked`, [[a.id, b.id, c.id]]);
  assert.equal(r.parked, 0);
  const rows = await env.sql('SELECT id::int, state, nparts, parts_ok, parts_delivered, smsc_ids FROM mt_messages WHERE id = ANY($1) ORDER BY id', [[a.id, b.id, c.id]]);
  assert.deepEqual(rows[0], { id: a.id, state: 'delivered', nparts: 1, parts_ok: 1, parts_delivered: 1, smsc_ids: ['A-1'] });
  assert.equal(rows[1].state, 'delivered');
  assert.equal(rows[1].parts_delivered, 2);
  assert.equal(rows[1].smsc_ids, null);
  assert.deepEqual(rows[2], { id: c.id, state: 'delivered', nparts: 3, parts_ok: 3, parts_delivered: 3, smsc_ids: ['C-1', 'C-2', 'C-3'] });
  const p = await env.sql('SELECT part, smsc_id, state, dlr_err FROM mt_parts WHERE mt_id = $1 ORDER BY part', [b.id]);
  assert.deepEqual(p, [{ part: 1, smsc_id: 'B-1', state: 'delivered', dlr_err: null }, { part: 2, smsc_id: 'B-2', state: 'delivered', dlr_err: 7 }]);
  assert.equal((await env.sql('SELECT count(*)::int AS n FROM mt_parts WHERE mt_id = ANY($1)', [[a.id, c.id]]))[0].n, 0, 'no part rows for the fast ones');
  // the 11-argument form (a daemon of the previous version) goes part by part
  const [d] = await env.sql(ins, [number('8433'), 0, 0]);
  await env.sql(`SELECT sg_mt_outcomes($1::bigint[], '{1}'::int[], '{1}'::int[], '{sqlt}'::text[], '{0}'::int[], '{D-1}'::text[], '{f}'::boolean[],
      '{sqlt}'::text[], '{D-1}'::text[], '{2}'::int[], '{0}'::int[])`, [[d.id]]);
  assert.equal((await env.sql('SELECT state FROM mt_messages WHERE id = $1', [d.id]))[0].state, 'delivered');
  assert.deepEqual(await env.sql('SELECT smsc_id, state FROM mt_parts WHERE mt_id = $1', [d.id]), [{ smsc_id: 'D-1', state: 'delivered' }]);
});

test('the same text on a link with text = fold: one GSM-7 part, every mark removed', async () => {
  const sim = env.sims.fold;
  const n = number('8491');
  const id = await queueMt(n, VI);
  const row = await waitMt(id, 'delivered');
  assert.equal(row.link, 'fold');
  assert.equal(row.nparts, 1);
  const subs = sim.submits.filter((s) => s.to === n);
  assert.equal(subs.length, 1);
  assert.equal(subs[0].dataCoding, 0);
  assert.equal(subs[0].esmClass & 0x40, 0, 'no UDH');
  assert.equal(subs[0].text, fold(VI));
  assert.match(subs[0].text, /^Xin chao! Hom nay ban se hoc .* Dung chia se ma OTP voi bat ky ai/);
  assert.ok(/^[\x20-\x7e]*$/.test(subs[0].text), 'plain ASCII');
});

test('a receipt that arrives before its submit_sm_resp still matches', async () => {
  const sim = env.sims.early;
  const n = number('8497');
  const id = await queueMt(n, VI);
  const row = await waitMt(id, 'delivered');
  assert.equal(row.parts_delivered, 3);
  assert.equal(sim.counters.receipts, 3);
  assert.deepEqual((await parts(id)).map((x) => x.state), ['delivered', 'delivered', 'delivered']);
  const early = await env.sql("SELECT count(*)::int AS n FROM dlr_early WHERE link = 'early'");
  assert.equal(early[0].n, 0, 'nothing left waiting in dlr_early');
});

async function parkedReceipts() {
  const r = await h.call(env, 'GET', '/metrics');
  assert.equal(r.status, 200);
  const m = r.text.match(/^skillgate_messages_total\{direction="dlr",state="parked"\} (\d+)$/m);
  assert.ok(m, 'parked receipts counter in /metrics');
  return Number(m[1]);
}

// The simulator sends each receipt right after its submit_sm_resp, as SMSCs
// do: results and receipts go to the database in one stream, results first,
// so none of these receipts has to wait in dlr_early for its part.
test('receipts right behind their submit_sm_resp are applied at once, none parked', async () => {
  const before = await parkedReceipts();
  const ids = [];
  for (let i = 0; i < 40; i++) ids.push(await queueMt(number('8496'), VI));
  await env.waitFor(async () => {
    const [r] = await env.sql("SELECT count(*)::int AS n FROM mt_messages WHERE id = ANY($1::bigint[]) AND state = 'delivered'", [ids]);
    return r.n === ids.length;
  }, 20000, 'all 40 messages delivered');
  const [p] = await env.sql('SELECT count(*)::int AS n, sum(parts_delivered)::int AS d FROM mt_messages WHERE id = ANY($1::bigint[])', [ids]);
  assert.equal(p.d, 120, 'every segment receipted');
  assert.equal(await parkedReceipts(), before, 'no receipt parked in dlr_early');
  // the counter does count: a receipt for an id no submit_sm_resp gave waits in dlr_early
  const st = await env.sims.manual.deliver({ from: number('8486'), to: '8079', text: receiptText('987654321', 'DELIVRD'), esmClass: 4 });
  assert.equal(st, 0);
  assert.equal(await parkedReceipts(), before + 1, 'an unmatched receipt is counted as parked');
});

// Results and receipts commit concurrently (no global lock): when a receipt and
// its part's submit result commit at the same moment, the receipt is parked in
// dlr_early although its part exists. The pipeline's periodic rematch applies it.
test('a receipt parked while its part committed is matched by the periodic rematch', async () => {
  const [m] = await env.sql(`INSERT INTO mt_messages (msisdn, text, kind, priority, state, nparts, parts_ok, link, submitted_at)
                             VALUES ($1, 'parked receipt', 'api', 0, 'submitted', 1, 1, 'viet', now()) RETURNING id`, [number('8496')]);
  const id = Number(m.id);
  await env.sql("INSERT INTO mt_parts (mt_id, part, link, smsc_id) VALUES ($1, 1, 'viet', $2)", [id, `parked${id}`]);
  await env.sql("INSERT INTO dlr_early (link, smsc_id, state, err) VALUES ('viet', $1, 2, 0)", [`parked${id}`]);
  const row = await waitMt(id, 'delivered', 15000);
  assert.equal(row.parts_delivered, 1);
  assert.deepEqual((await parts(id)).map((x) => x.state), ['delivered']);
  const left = await env.sql("SELECT count(*)::int AS n FROM dlr_early WHERE smsc_id = $1", [`parked${id}`]);
  assert.equal(left[0].n, 0, 'the parked receipt was consumed');
  assert.match(env.log(), /parked receipt\(s\) matched/);
});

test('receipts parked over a day are dropped by the periodic rematch; younger ones stay', async () => {
  await env.sql("INSERT INTO dlr_early (link, smsc_id, state, err, at) VALUES ('viet', 'stale-day', 2, 0, now() - interval '25 hours'), ('viet', 'young-hour', 2, 0, now() - interval '1 hour')");
  await env.waitFor(async () => (await env.sql("SELECT count(*)::int AS n FROM dlr_early WHERE smsc_id = 'stale-day'"))[0].n === 0, 15000, 'the day-old receipt dropped');
  assert.equal((await env.sql("SELECT count(*)::int AS n FROM dlr_early WHERE smsc_id = 'young-hour'"))[0].n, 1, 'an hour-old one stays parked');
  assert.match(env.log(), /receipt\(s\) parked over a day dropped/);
});

test('hex submit ids and decimal receipt ids (submit_id_base hex, dlr_id_base decimal) match', async () => {
  const sim = env.sims.hexdec;
  const n = number('8498');
  const id = await queueMt(n, 'hex and decimal ids');
  const [sub] = await sim.waitFor(() => { const s = sim.submits.filter((x) => x.to === n); return s.length ? s : null; }, 5000);
  assert.match(sub.messageId, /^[0-9a-f]+$/);
  await waitMt(id, 'delivered');
  const [p] = await parts(id);
  assert.equal(p.smsc_id, String(parseInt(sub.messageId, 16)));
});

test('the bench simulator\'s raw-byte receipts (rawReceipts) are matched like encoded ones', async () => {
  const before = await parkedReceipts();
  const ids = [await queueMt(number('8432'), VI), await queueMt(number('8432'), 'one part')];
  for (const id of ids) await waitMt(id, 'delivered');
  assert.equal(env.sims.raw.counters.receipts, 4);
  assert.deepEqual((await parts(ids[0])).map((x) => x.state), ['delivered', 'delivered', 'delivered']);
  assert.equal(await parkedReceipts(), before, 'none parked');
});

const receiptText = (dec, stat) =>
  `id:${dec} sub:001 dlvrd:${stat === 'DELIVRD' ? '001' : '000'} submit date:2611281200 done date:2611281201 stat:${stat} err:000 text:hello`;

test('a receipt without esm_class 0x04 (only "id:.. stat:DELIVRD" text) takes the receipt path, not the quiz engine', async () => {
  const sim = env.sims.manual;
  const n = number('8486');
  const id = await queueMt(n, 'receipt without esm_class');
  await waitMt(id, 'submitted');
  const sub = sim.submits.find((s) => s.to === n);
  const dec = String(parseInt(sub.messageId, 16)); // decimal in the receipt, hex in the resp
  const st = await sim.deliver({ from: n, to: '8079', text: receiptText(dec, 'DELIVRD'), esmClass: 0 });
  assert.equal(st, 0);
  await waitMt(id, 'delivered');
  // a leading zero and an intermediate state change nothing; the MO table never sees receipts
  assert.equal(await sim.deliver({ from: n, to: '8079', text: receiptText(`0${dec}`, 'ENROUTE'), esmClass: 0 }), 0);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await env.sql('SELECT count(*)::int AS n FROM mo_messages WHERE msisdn = $1', [n]))[0].n, 0);
  assert.equal((await env.sql('SELECT count(*)::int AS n FROM mt_messages WHERE msisdn = $1', [n]))[0].n, 1, 'no reply');
  assert.equal((await waitMt(id, 'delivered')).parts_delivered, 1);
});

test('a failed receipt fails the message', async () => {
  const sim = env.sims.manual;
  const n = number('8486');
  const id = await queueMt(n, 'this one fails');
  await waitMt(id, 'submitted');
  const sub = sim.submits.find((s) => s.to === n);
  assert.equal(await sim.deliver({ from: n, to: '8079', text: receiptText(String(parseInt(sub.messageId, 16)), 'UNDELIV'), esmClass: 4 }), 0);
  await waitMt(id, 'failed');
  assert.deepEqual((await parts(id)).map((x) => x.state), ['failed']);
});

for (const mode of ['udh8', 'udh16', 'sar']) {
  test(`a concatenated MO (${mode}) out of order is reassembled and answered once`, async () => {
    const sim = env.sims.viet;
    const n = number('8496');
    const text = `HELP ${mode} `.padEnd(400, '.x');
    const st = await sim.deliver({ from: n, to: '8079', text, parts: mode, order: [3, 1, 2] });
    assert.deepEqual(st, [0, 0, 0]);
    let mo;
    await env.waitFor(async () => {
      mo = await env.sql('SELECT id::int, text, state FROM mo_messages WHERE msisdn = $1', [n]);
      return mo.length === 1 && mo[0].state !== 'received';
    }, 10000, 'the reassembled MO');
    assert.equal(mo[0].text, text);
    assert.equal(mo[0].state, 'processed');
    await new Promise((r) => setTimeout(r, 300));
    const mts = await env.sql('SELECT mo_id::int FROM mt_messages WHERE msisdn = $1', [n]);
    assert.ok(mts.length >= 1, 'answered');
    assert.ok(mts.every((m) => m.mo_id === mo[0].id), 'every reply answers the one MO');
    assert.equal((await env.sql('SELECT count(*)::int AS n FROM mo_messages WHERE msisdn = $1', [n]))[0].n, 1);
  });
}

test('an inbound data_coding 8 Vietnamese keyword "HỌC 1" starts the same quiz as "HOC 1"', async () => {
  const sim = env.sims.viet;
  const a = number('8496');
  const b = number('8496');
  assert.equal(await sim.deliver({ from: a, to: '8079', text: 'HỌC 1', dataCoding: 8 }), 0);
  assert.equal(await sim.deliver({ from: b, to: '8079', text: 'HOC 1', dataCoding: 0 }), 0);
  const reply = async (n) => {
    let r;
    await env.waitFor(async () => {
      r = await env.sql('SELECT text FROM mt_messages WHERE msisdn = $1 ORDER BY id', [n]);
      return r.length > 0;
    }, 10000, 'a reply');
    return r.map((x) => x.text);
  };
  const ra = await reply(a);
  const rb = await reply(b);
  const [mo] = await env.sql('SELECT text FROM mo_messages WHERE msisdn = $1', [a]);
  assert.equal(mo.text, 'HỌC 1', 'decoded from UCS-2');
  const intro = (r) => r[0].split('\n')[0]; // the first question follows, drawn at random
  assert.equal(intro(ra), intro(rb), 'the same quiz introduction');
  assert.match(ra[0], /^Kiểm tra kỹ năng 1:/);
  assert.equal(ra.length, rb.length);
  const st = await env.sql('SELECT msisdn, flow_state FROM subscribers WHERE msisdn = ANY($1)', [[a, b]]);
  assert.equal(st.length, 2);
  for (const s of st) assert.equal(parseQuizState(s.flow_state).skill, 1, 'a quiz of skill 1 is in progress');
});
