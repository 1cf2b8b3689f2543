'use strict';
// SMPP links end to end (issue 3): node-smpp SMSC simulators -> skillgated ->
// PostgreSQL. Each test starts its own database, simulators and daemon with
// the link configuration it needs, and asserts on what the simulator saw,
// the outbox (mt_messages / mt_parts) and the daemon log.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const h = require('./lib/harness');
const { CMD, ST } = require('../sim/smsc');

let seqNo = 0;
function number(prefix = '8491') { return `${prefix}${String(3000000 + (++seqNo) * 7919).slice(-7)}`; }

// Queues MTs straight into the outbox (kind api) and returns their ids.
async function queueMt(env, to, texts, { prio = 0 } = {}) {
  const ids = [];
  for (const t of texts) {
    const [r] = await env.sql("INSERT INTO mt_messages (msisdn, text, kind, priority) VALUES ($1, $2, 'api', $3) RETURNING id",
      [to, t, prio]);
    ids.push(Number(r.id));
  }
  return ids;
}

async function mtStates(env, ids) {
  return env.sql('SELECT id::int, state, nparts, parts_ok, parts_delivered, error_status, link FROM mt_messages WHERE id = ANY($1) ORDER BY id', [ids]);
}

async function waitDelivered(env, ids, ms = 20000, what = 'the MTs to be delivered') {
  let rows;
  try {
    await env.waitFor(async () => {
      rows = await mtStates(env, ids);
      return rows.length === ids.length && rows.every((r) => r.state === 'delivered');
    }, ms, what);
  } catch (e) {
    e.message += `\n${JSON.stringify(rows)}`;
    throw e;
  }
  return rows;
}

// A raw PDU: header + body.
function pdu(cmd, seq, body = Buffer.alloc(0), status = 0) {
  const b = Buffer.alloc(16 + body.length);
  b.writeUInt32BE(16 + body.length, 0);
  b.writeUInt32BE(cmd >>> 0, 4);
  b.writeUInt32BE(status >>> 0, 8);
  b.writeUInt32BE(seq >>> 0, 12);
  body.copy(b, 16);
  return b;
}

function tlv(tag, value) {
  const v = Buffer.isBuffer(value) ? value : Buffer.from(value);
  const b = Buffer.alloc(4 + v.length);
  b.writeUInt16BE(tag, 0);
  b.writeUInt16BE(v.length, 2);
  v.copy(b, 4);
  return b;
}

// deliver_sm mandatory body (GSM text) followed by raw TLV bytes.
function deliverBody(from, text, tlvs = Buffer.alloc(0)) {
  const cstr = (s) => Buffer.from(`${s}\0`, 'latin1');
  const sm = Buffer.from(text, 'latin1');
  return Buffer.concat([
    cstr(''), Buffer.from([1, 1]), cstr(from), Buffer.from([0, 0]), cstr('8079'),
    Buffer.from([0, 0, 0]), cstr(''), cstr(''), Buffer.from([0, 0, 0, 0, sm.length]), sm, tlvs,
  ]);
}

const { withEnv } = h;

test('transceiver bind: MO answered, MT submitted on it, receipt matched, enquire_link sent and answered', async () => {
  await withEnv({ links: { viettel: { sim: { enquireLinkMs: 0 }, conf: { enquire_link: 1 } } } }, async (env) => {
    const sim = env.sim;
    assert.equal(sim.binds.length, 1);
    assert.equal(sim.binds[0].mode, 'transceiver');
    assert.equal(sim.binds[0].systemId, 'skillgate');
    const n = number();
    assert.equal(await sim.deliver({ from: n, to: '8079', text: 'HELP' }), 0);
    await sim.waitFor(() => sim.messages().some((m) => m.to === n), 10000, 'the reply');
    const [mt] = await env.sql('SELECT id::int FROM mt_messages WHERE msisdn = $1', [n]);
    await waitDelivered(env, [mt.id]);
    assert.ok(sim.submits.filter((s) => s.to === n).every((s) => s.session === 0));
    // the daemon sends enquire_link every second (enquire_link = 1) ...
    const el = sim.counters.enquireLinks;
    await sim.waitFor(() => sim.counters.enquireLinks >= el + 2, 4000, 'two more enquire_link');
    // ... and answers the SMSC's, with the same sequence number
    const r = await sim.deliverRaw(pdu(CMD.enquire_link, 4242));
    assert.ok(r, 'an answer to enquire_link');
    assert.equal(r.command_id, 0x80000015);
    assert.equal(r.command_status, 0);
    assert.equal(r.sequence_number, 4242);
    assert.match(env.log(), /viettel\/trx: binding -> bound/);
  });
});

test('transmitter+receiver: two binds, MO on the receiver, MT on the transmitter, receipt on the receiver', async () => {
  await withEnv({ links: { mobi: { sim: {}, conf: { bind: 'transmitter+receiver' } } } }, async (env) => {
    const sim = env.sim;
    assert.equal(sim.boundCount(), 2);
    const modes = sim.binds.map((b) => b.mode).sort();
    assert.deepEqual(modes, ['receiver', 'transmitter']);
    const tx = sim.binds.find((b) => b.mode === 'transmitter').index;
    const rx = sim.binds.find((b) => b.mode === 'receiver').index;
    const n = number();
    // an MO can only go to the receiver: sim.deliver picks a non-transmitter session
    assert.equal(await sim.deliver({ from: n, to: '8079', text: 'HELP', session: rx }), 0);
    const [mo] = await env.waitFor(async () => {
      const r = await env.sql("SELECT id::int, link, state FROM mo_messages WHERE msisdn = $1 AND state = 'processed'", [n]);
      return r.length ? r : null;
    }, 10000, 'the MO');
    assert.equal(mo.link, 'mobi');
    await sim.waitFor(() => sim.submits.some((s) => s.to === n), 10000, 'the reply');
    assert.ok(sim.submits.filter((s) => s.to === n).every((s) => s.session === tx), 'MT on the transmitter');
    const ids = (await env.sql('SELECT id::int FROM mt_messages WHERE msisdn = $1', [n])).map((r) => r.id);
    await waitDelivered(env, ids); // the receipt came back on the receiver (the only one that can carry it)
    // a deliver_sm on the transmitter is refused with RINVBNDSTS? no: the SMSC never does that;
    // a submit is what the transmitter carries. Both binds are logged.
    assert.match(env.log(), /mobi\/tx: binding -> bound/);
    assert.match(env.log(), /mobi\/rx: binding -> bound/);
  });
});

test('wrong password: no bind, reconnects with growing backoff, the daemon stays up and binds once fixed', async () => {
  await withEnv({
    links: { viettel: { sim: { password: 'other' }, conf: { reconnect_min: 1, reconnect_max: 4 } } },
    daemon: false,
  }, async (env) => {
    const sim = env.sim;
    const fails = [];
    sim.on('bind_failed', (e) => fails.push({ ...e, at: Date.now() }));
    const d = await env.startDaemon({ waitBind: false });
    await sim.waitFor(() => fails.length >= 4, 12000, 'four refused binds');
    assert.equal(sim.binds.length, 0);
    assert.ok(fails.every((f) => f.status === ST.RINVPASWD));
    const gaps = fails.slice(1).map((f, i) => f.at - fails[i].at);
    assert.ok(gaps.every((g) => g >= 450), `no hammering: ${gaps}`);
    assert.ok(gaps[2] > gaps[0], `backoff grows: ${gaps}`);
    assert.equal(d.exited, null, 'still running');
    assert.match(env.log(), /bind refused, status 0x0e/);
    assert.match(env.log(), /reconnecting in \d+ ms/);
    assert.ok(!env.log().includes('secret'), 'the password is never logged');
    sim.opts.password = 'secret';
    await sim.waitFor(() => sim.boundCount() === 1, 8000, 'a bind once the password matches');
  });
});

// A CA and a server certificate for 127.0.0.1 (SAN IP), made with openssl.
function makeCa(dir, name) {
  const o = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}-ca.key`, '-out', `${name}-ca.pem`,
    '-days', '2', '-subj', `/CN=${name} test CA`]);
  o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}-srv.key`, '-out', `${name}-srv.csr`, '-subj', '/CN=127.0.0.1']);
  fs.writeFileSync(path.join(dir, `${name}-ext.cnf`), 'subjectAltName=IP:127.0.0.1\n');
  o(['x509', '-req', '-in', `${name}-srv.csr`, '-CA', `${name}-ca.pem`, '-CAkey', `${name}-ca.key`, '-CAcreateserial',
    '-out', `${name}-srv.pem`, '-days', '2', '-extfile', `${name}-ext.cnf`]);
  return {
    ca: path.join(dir, `${name}-ca.pem`),
    tls: { key: fs.readFileSync(path.join(dir, `${name}-srv.key`)), cert: fs.readFileSync(path.join(dir, `${name}-srv.pem`)) },
  };
}

test('TLS bind verified against a CA file; a certificate from another CA is refused', async () => {
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'sgtls-'));
  try {
    const good = makeCa(dir, 'good');
    const other = makeCa(dir, 'other');
    await withEnv({
      links: {
        secure: { sim: { tls: good.tls }, conf: { tls: 'yes', tls_ca_file: good.ca } },
        // served by a certificate of the good CA, but this link trusts only "other"
        wrongca: { sim: { tls: good.tls }, conf: { tls: 'yes', tls_ca_file: other.ca, default_route: 'no', short_codes: '9999' } },
      },
      daemon: false,
    }, async (env) => {
      await env.startDaemon({ waitBind: false });
      await env.sims.secure.waitFor(() => env.sims.secure.boundCount() === 1, 10000, 'the TLS bind');
      const n = number();
      const ids = await queueMt(env, n, ['over TLS']);
      await waitDelivered(env, ids);
      assert.equal(env.sims.secure.submits[0].text, 'over TLS');
      await env.waitFor(() => /wrongca\/trx: TLS: .*certificate verify failed/.test(env.log()), 10000, 'the refused certificate');
      await env.waitFor(() => (env.log().match(/wrongca\/trx: connecting -> waiting/g) || []).length >= 2, 10000, 'a second attempt');
      assert.equal(env.sims.wrongca.counters.binds, 0, 'no bind over an unverified connection');
      assert.equal(env.sims.wrongca.binds.length, 0);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a silent SMSC is detected within enquire_link + response_timeout, rebinds, no MT is lost', async () => {
  await withEnv({ links: { viettel: { sim: {}, conf: { enquire_link: 1, response_timeout: 1 } } } }, async (env) => {
    const sim = env.sim;
    const n = number();
    await waitDelivered(env, await queueMt(env, n, ['before silence']));
    let closedAt = 0;
    sim.once('close', () => { closedAt = Date.now(); });
    const t0 = Date.now();
    sim.setSilent(true);
    const during = await queueMt(env, n, ['during silence 1', 'during silence 2', 'during silence 3']);
    await sim.waitFor(() => closedAt > 0, 5000, 'the daemon to drop the silent connection');
    const took = closedAt - t0;
    assert.ok(took <= 2600, `detected in ${took} ms (enquire_link 1 s + response_timeout 1 s)`);
    assert.match(env.log(), /silent link|no response to/);
    sim.setSilent(false);
    await sim.waitFor(() => sim.boundCount() === 1 && sim.binds.length >= 2, 10000, 'a rebind');
    await waitDelivered(env, during);
    for (const t of ['during silence 1', 'during silence 2', 'during silence 3']) {
      assert.ok(sim.messages().some((m) => m.to === n && m.text === t), `"${t}" reached the SMSC`);
    }
    await waitDelivered(env, await queueMt(env, n, ['after silence']));
  });
});

test('SMSC killed and restarted: reconnect, in-flight MTs resent, none lost', async () => {
  await withEnv({ links: { viettel: { sim: { respDelayMs: 400 }, conf: { window: 10, reconnect_min: 1, reconnect_max: 1 } } } }, async (env) => {
    const sim = env.sim;
    const n = number();
    const texts = Array.from({ length: 30 }, (_, i) => `crash test ${i}`);
    const ids = await queueMt(env, n, texts);
    await sim.waitFor(() => sim.submits.length >= 5, 10000, 'submits in flight');
    const before = new Set(sim.submits.map((s) => s.text));
    await sim.stop(); // connections destroyed, pending responses never sent
    await new Promise((r) => setTimeout(r, 300));
    await sim.start();
    await sim.waitFor(() => sim.boundCount() === 1, 10000, 'the reconnect');
    const rows = await waitDelivered(env, ids, 30000);
    assert.equal(rows.length, 30);
    const after = sim.submits.filter((s) => s.session > 0).map((s) => s.text);
    assert.ok(after.some((t) => before.has(t)), 'some MT submitted before the crash (no response) was sent again');
    for (const t of texts) assert.ok(sim.submits.some((s) => s.text === t), `"${t}" reached the SMSC`);
    const parts = await env.sql('SELECT count(*)::int AS n FROM mt_segments WHERE mt_id = ANY($1) AND state = \'delivered\'', [ids]);
    assert.equal(parts[0].n, 30);
    assert.match(env.log(), /closing connection/);
  });
});

test('throttled every 5th submit: every message delivered, parts in order, the link pauses', async () => {
  await withEnv({
    links: { viettel: { sim: { throttleEvery: 5 }, conf: { throttle_pause_ms: 200, window: 10 } } },
  }, async (env) => {
    const sim = env.sim;
    const n = number();
    // 3-part GSM messages (3 x 153 septets) with the part number visible in every segment
    const texts = Array.from({ length: 6 }, (_, i) => Array.from({ length: 3 }, (_, p) =>
      `M${i}P${p + 1} `.padEnd(153, String.fromCharCode(97 + p))).join(''));
    const ids = await queueMt(env, n, texts);
    const rows = await waitDelivered(env, ids, 30000);
    assert.ok(rows.every((r) => r.nparts === 3 && r.parts_delivered === 3), JSON.stringify(rows));
    assert.ok(sim.counters.throttled >= 3, `throttled ${sim.counters.throttled}`);
    const msgs = sim.messages().filter((m) => m.to === n);
    assert.deepEqual(msgs.map((m) => m.text).sort(), [...texts].sort(), 'each message reassembled once, exactly');
    // parts of each message reach the SMSC in order
    for (let i = 0; i < texts.length; i++) {
      const seqs = sim.submits.filter((s) => s.to === n && s.text.startsWith(`M${i}P`))
        .map((s) => s.sar && s.sar.seq);
      assert.deepEqual(seqs, [1, 2, 3], `message ${i} parts in order: ${seqs}`);
    }
    // the pause: after the first ESME_RTHROTTLED (and the submits already on the wire) the
    // link is silent for ~throttle_pause_ms, and the throttled segment is the first one resent
    const first = sim.refused[0];
    const all = [...sim.submits, ...sim.refused].filter((s) => s.to === n).sort((x, y) => x.at - y.at);
    const j = all.findIndex((s, k) => k > all.indexOf(first) && s.at - all[k - 1].at >= 150);
    assert.ok(j > 0, 'a pause of >= 150 ms after the throttled submit');
    assert.equal(all[j].text, first.text, 'the throttled segment goes first after the pause');
    assert.deepEqual(all[j].sar, first.sar);
    assert.match(env.log(), /status 0x58, pausing \d+ ms/);
  });
});

test('window full: never more than `window` submits outstanding at the SMSC', async () => {
  await withEnv({ links: { viettel: { sim: { respDelayMs: 300 }, conf: { window: 2, rate: 0 } } } }, async (env) => {
    const sim = env.sim;
    let outstanding = 0;
    let max = 0;
    // count outstanding at the SMSC: +1 per submit received, -1 per response written
    const origWrite = sim._write.bind(sim);
    sim._write = (s, buf) => {
      if (buf.length >= 8 && buf.readUInt32BE(4) === CMD.submit_sm_resp) outstanding--;
      return origWrite(s, buf);
    };
    sim.on('submit', () => { outstanding++; max = Math.max(max, outstanding); });
    const n = number();
    const ids = await queueMt(env, n, Array.from({ length: 10 }, (_, i) => `window ${i}`));
    await waitDelivered(env, ids, 20000);
    assert.equal(max, 2, `at most 2 outstanding (saw ${max})`);
    // 10 submits, 2 at a time, 300 ms each: at least 5 rounds
    const span = sim.submits[9].at - sim.submits[0].at;
    assert.ok(span >= 4 * 280, `submits spread over ${span} ms`);
  });
});

test('two links: longest-prefix routing, failover when one SMSC is down, back when it returns', async () => {
  await withEnv({
    links: {
      viettel: { sim: {}, conf: { prefixes: '8496 8497 8498 8486', default_route: 'yes', reconnect_min: 1, reconnect_max: 1 } },
      vina: { sim: {}, conf: { prefixes: '8491 8494 84988', default_route: 'no', short_codes: '8079' } },
    },
  }, async (env) => {
    const { viettel, vina } = env.sims;
    const a = number('8496'); // viettel
    const b = number('8491'); // vina
    const c = number('84988'); // vina: longer prefix than viettel's 8498
    const d = number('8470'); // nobody's prefix: default route (viettel)
    const ids = [];
    for (const x of [a, b, c, d]) ids.push(...await queueMt(env, x, [`route ${x}`]));
    const rows = await waitDelivered(env, ids);
    assert.deepEqual(rows.map((r) => r.link), ['viettel', 'vina', 'vina', 'viettel']);
    assert.ok(viettel.submits.some((s) => s.to === a) && viettel.submits.some((s) => s.to === d));
    assert.ok(vina.submits.some((s) => s.to === b) && vina.submits.some((s) => s.to === c));
    // vina goes down: its traffic fails over to viettel
    await vina.stop();
    await env.waitFor(() => /link vina cannot transmit/.test(env.log()), 5000, 'vina down');
    const e = number('8491');
    const [fid] = await queueMt(env, e, ['failover']);
    const [fr] = await waitDelivered(env, [fid]);
    assert.equal(fr.link, 'viettel');
    assert.ok(viettel.submits.some((s) => s.to === e && s.text === 'failover'));
    assert.match(env.log(), /link vina not bound, failing over to viettel/);
    // vina comes back: prefix routing again
    await vina.start();
    await vina.waitFor(() => vina.boundCount() === 1, 10000, 'vina rebinds');
    const [bid] = await queueMt(env, e, ['back home']);
    const [br] = await waitDelivered(env, [bid]);
    assert.equal(br.link, 'vina');
  });
});

test('SIGTERM: in-flight responses awaited, then unbind, clean exit', async () => {
  await withEnv({ links: { viettel: { sim: { respDelayMs: 500 }, conf: {} } } }, async (env) => {
    const sim = env.sim;
    const n = number();
    const ids = await queueMt(env, n, ['last words']);
    await sim.waitFor(() => sim.submits.length === 1, 5000, 'the submit');
    const unbinds = [];
    sim.on('unbind', () => unbinds.push(Date.now()));
    const t0 = Date.now();
    const ex = await env.stopDaemon();
    assert.equal(ex.code, 0);
    assert.equal(unbinds.length, 1, 'one unbind');
    assert.ok(unbinds[0] - t0 >= 350, 'the unbind waited for the outstanding submit_sm_resp');
    assert.match(env.log(), /bound -> unbinding/);
    assert.match(env.log(), /unbinding -> closed/);
    assert.equal(sim.submits.length, 1, 'sent once');
  });
});

test('SIGTERM: a submit_sm_resp that arrives while draining is recorded before exit', async () => {
  await withEnv({ links: { viettel: { sim: { respDelayMs: 500 }, conf: {} } } }, async (env) => {
    const ids = await queueMt(env, number(), ['last words']);
    await env.sim.waitFor(() => env.sim.submits.length === 1, 5000, 'the submit');
    assert.equal((await env.stopDaemon()).code, 0);
    const [r] = await mtStates(env, ids);
    assert.ok(['submitted', 'delivered'].includes(r.state), `accepted before the unbind, recorded: ${r.state}`);
  });
});

test('hostile and unknown PDUs from the SMSC get the right status and leave the link up', async () => {
  await withEnv({ links: { viettel: { sim: {}, conf: {} } } }, async (env) => {
    const sim = env.sim;
    const n = number();
    const cases = [
      // unknown command id -> generic_nack ESME_RINVCMDID
      { name: 'unknown command', buf: pdu(0x00000777, 11), cmd: CMD.generic_nack, status: 0x03, seq: 11 },
      // 29 TLVs (more than 16) -> ESME_RINVOPTPARSTREAM
      { name: '29 TLVs', buf: pdu(CMD.deliver_sm, 12, deliverBody(n, 'x', Buffer.concat(Array.from({ length: 29 }, () => tlv(0x1400, 'ab'))))), cmd: 0x80000005, status: 0xc0, seq: 12 },
      // a TLV whose length runs past the PDU -> ESME_RINVOPTPARSTREAM
      { name: 'truncated TLV', buf: pdu(CMD.deliver_sm, 13, deliverBody(n, 'x', Buffer.from([0x04, 0x24, 0x00, 0x20, 0x41, 0x42]))), cmd: 0x80000005, status: 0xc0, seq: 13 },
      // message_state must be 1 octet -> ESME_RINVPARLEN
      { name: 'numeric TLV of the wrong length', buf: pdu(CMD.deliver_sm, 14, deliverBody(n, 'x', tlv(0x0427, Buffer.from([0, 2])))), cmd: 0x80000005, status: 0xc2, seq: 14 },
      // short_message length past the end -> ESME_RINVMSGLEN
      { name: 'sm_length past the end', buf: pdu(CMD.deliver_sm, 15, deliverBody(n, 'x').subarray(0, -1)), cmd: 0x80000005, status: 0x01, seq: 15 },
    ];
    for (const c of cases) {
      const r = await sim.deliverRaw(c.buf);
      assert.ok(r, `${c.name}: an answer`);
      assert.equal(r.command_id, c.cmd >>> 0, `${c.name}: command`);
      assert.equal(r.command_status, c.status, `${c.name}: status`);
      assert.equal(r.sequence_number, c.seq, `${c.name}: sequence`);
      assert.equal(sim.boundCount(), 1, `${c.name}: link still up`);
    }
    assert.match(env.log(), /malformed deliver_sm seq 12, answering 0xc0/);
    assert.match(env.log(), /unknown command 0x00000777/);
    // a valid deliver_sm with sequence 0 (Kannel does that) is processed and answered with seq 0
    const r0 = await sim.deliverRaw(pdu(CMD.deliver_sm, 0, deliverBody(n, 'HELP')), 5000);
    assert.ok(r0, 'seq 0: an answer');
    assert.equal(r0.command_id, 0x80000005);
    assert.equal(r0.command_status, 0);
    assert.equal(r0.sequence_number, 0);
    await env.waitFor(async () => (await env.sql("SELECT 1 FROM mo_messages WHERE msisdn = $1 AND text = 'HELP'", [n])).length === 1, 5000, 'the seq 0 MO');
    // nothing was lost: a normal MO still works on the same connection
    assert.equal(await sim.deliver({ from: n, to: '8079', text: 'INFO' }), 0);
    assert.equal(sim.binds.length, 1, 'never reconnected');
    // let the replies go out first, so the next PDU from the daemon is the answer to the next one
    await env.waitFor(async () => {
      const r = await env.sql('SELECT state FROM mt_messages WHERE msisdn = $1', [n]);
      return r.length >= 2 && r.every((x) => x.state === 'delivered');
    }, 10000, 'the replies to HELP and INFO');
    await sim.waitFor(() => sim.counters.delivered === sim.counters.receipts + 1, 5000, 'every receipt acknowledged');
    // oversize command_length: generic_nack ESME_RINVCMDLEN, then the connection is closed (by design)
    const big = Buffer.alloc(16);
    big.writeUInt32BE(1 << 20, 0);
    big.writeUInt32BE(CMD.deliver_sm, 4);
    big.writeUInt32BE(16, 12);
    const rb = await sim.deliverRaw(big, 3000);
    assert.ok(rb === null || (rb.command_id === CMD.generic_nack && rb.command_status === 0x02), JSON.stringify(rb));
    await env.waitFor(() => /command_length out of bounds/.test(env.log()), 3000, 'the close');
    await sim.waitFor(() => sim.binds.length === 2 && sim.boundCount() === 1, 10000, 'the rebind');
    const ids = await queueMt(env, n, ['still alive']);
    await waitDelivered(env, ids);
  });
});
