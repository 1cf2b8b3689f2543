'use strict';
// The bench's SMSC simulator in C (tests/bench/smscsim.c, `make bench-sim`), which `make bench`
// measures skillgate and Kannel against: it must speak SMPP as an SMSC to a third-party ESME
// (npm `smpp`; Kannel reads receipts the same way) and drive the real daemon through the bench's
// own harness (tests/bench/lib.js) with every MO answered. Figures are the bench's business; this
// checks that the tool works.
const test = require('node:test');
const { after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const smpp = require('smpp');
const h = require('./lib/harness');

process.env.BENCH_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'sgbenchsim-'));
process.env.BENCH_SIM = 'c';
const L = require('../bench/lib');
after(() => fs.rmSync(process.env.BENCH_DIR, { recursive: true, force: true }));

const SCRIPT = ['HOC 1', 'A', 'B', 'C', 'D', 'A'];

// node-smpp calls back with the response PDU
function call(session, cmd, fields) {
  return new Promise((resolve) => session[cmd](fields, resolve));
}

test('bench simulator (C): an SMSC to a third-party ESME: binds, submit_sm_resp ids, receipts', async () => {
  const sim = await new L.Sim('sim1').start({ receipts: true, rawReceipts: true });
  const session = smpp.connect({ url: `smpp://127.0.0.1:${sim.port}`, auto_enquire_link_period: 0 });
  session.on('error', () => {});
  try {
    await new Promise((r) => session.on('connect', r));
    const receipts = [];
    session.on('deliver_sm', (pdu) => { receipts.push(pdu); session.send(pdu.response()); });
    assert.equal((await call(session, 'bind_transceiver', { system_id: 'skillgate', password: 'wrong' })).command_status, 0x0e);
    assert.equal((await call(session, 'bind_transceiver', { system_id: 'skillgate', password: 'secret' })).command_status, 0);
    assert.equal((await call(session, 'bind_transceiver', { system_id: 'skillgate', password: 'secret' })).command_status, 0x05,
      'a second bind on a bound session');
    assert.equal((await call(session, 'enquire_link', {})).command_status, 0);
    const ids = [];
    for (const [text, rd] of [['Xin chao 1', 1], ['Xin chao 2', 0], ['Chào bạn', 1]]) {
      const r = await call(session, 'submit_sm', {
        source_addr: '8079', destination_addr: '84912345678', short_message: text, registered_delivery: rd,
      });
      assert.equal(r.command_status, 0);
      assert.match(r.message_id, /^[0-9a-f]+$/, 'submit_sm_resp ids in hex');
      ids.push(r.message_id);
    }
    assert.equal((await call(session, 'submit_sm', { source_addr: '8079', destination_addr: '8'.repeat(30), short_message: 'x' })).command_status,
      0x02, 'an address longer than SMPP allows');
    assert.notEqual((await call(session, 'query_sm', { message_id: ids[0], source_addr: '8079' })).command_status, 0,
      'a command it does not serve is refused');
    await h.waitFor(() => receipts.length >= 2, 5000, 'two receipts');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(receipts.length, 2, 'receipts only where registered_delivery asked for one');
    for (const [k, i] of [[0, 0], [1, 2]]) {
      const p = receipts[k];
      assert.equal(p.esm_class, 0x04);
      assert.equal(p.source_addr, '84912345678');
      assert.equal(p.destination_addr, '8079');
      assert.equal(p.receipted_message_id, ids[i]);
      assert.equal(p.message_state, 2);
      const text = Buffer.isBuffer(p.short_message.message) ? p.short_message.message.toString('latin1') : String(p.short_message.message);
      assert.match(text, new RegExp(`^id:${BigInt('0x' + ids[i])} sub:001 dlvrd:001 submit date:\\d{10} done date:\\d{10} stat:DELIVRD err:000 text:`),
        'the receipt text carries the id in decimal (Kannel msg-id-type 0x02)');
    }
    assert.match(String(receipts[1].short_message.message), /text:Ch.o b.n$/, 'non-ASCII characters of the text shown as dots');
    const c = await sim.call('counters');
    assert.equal(c.counters.accepted, 3);
    assert.equal(c.counters.receipts, 2);
    assert.equal(c.counters.malformed, 1);
  } finally {
    session.destroy();
    await sim.stop();
  }
});

test('bench simulator (C): the real daemon answers every MO of the closed and the open loop', async () => {
  const sim = await new L.Sim('sim1').start({ receipts: true, rawReceipts: true });
  const db = await L.createDb(`sg_benchsim_${process.pid}`);
  const conf = L.daemonConf(path.join(process.env.BENCH_DIR, 'd.conf'), db.conninfo,
    [{ name: 's1', port: sim.port, prefixes: '', dflt: true }]);
  const d = new L.Daemon(conf);
  try {
    await d.start([sim]);
    const closed = await sim.call('closed', {
      base: 84900000000, concurrency: 20, durationMs: 3000, warmupMs: 500, script: SCRIPT, quietMs: 30, timeoutMs: 10000,
    });
    assert.ok(closed.done >= 60, `${closed.done} MOs answered in the closed loop`);
    assert.equal(closed.timeouts, 0);
    assert.equal(closed.nacks, 0);
    assert.ok(closed.p50 > 0 && closed.p99 >= closed.p50 && closed.max >= closed.p99);
    const open = await sim.call('open', { base: 84910000000, rate: 100, durationMs: 2000, script: SCRIPT, quietMs: 30, timeoutMs: 10000 });
    assert.ok(open.sent >= 190 && open.sent <= 201, `${open.sent} MOs offered at 100/s for 2 s`);
    assert.equal(open.answered, open.sent);
    assert.equal(open.timeouts, 0);
    // in the database: every MO processed, every reply delivered by its receipt, one
    // submit_sm accepted per segment
    await h.waitFor(async () => (await db.db.query(
      "SELECT count(*)::int AS n FROM mt_messages WHERE state <> 'delivered'")).rows[0].n === 0, 15000, 'every reply delivered');
    const q = (await db.db.query(`SELECT (SELECT count(*) FROM mo_messages WHERE state = 'processed')::int AS mo,
      (SELECT count(*) FROM mo_messages)::int AS all_mo, (SELECT sum(nparts) FROM mt_messages)::int AS parts`)).rows[0];
    assert.equal(q.mo, q.all_mo);
    assert.ok(q.mo >= closed.done + open.sent);
    const c = await sim.call('counters');
    assert.equal(c.counters.accepted, q.parts);
    assert.equal(c.counters.receipts, q.parts);
  } finally {
    await d.stop();
    await sim.stop();
    await db.db.end();
    await L.adminQuery(`DROP DATABASE IF EXISTS ${db.name} WITH (FORCE)`);
  }
});
