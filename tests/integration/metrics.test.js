'use strict';
// /metrics PDU counters (#9 item 4): skillgate_smpp_pdus_total by link, direction, command and
// (for responses) status, after real MT and MO traffic against the SMSC simulator: submit_sm
// out / submit_sm_resp in with ESME_ROK and ESME_RTHROTTLED, deliver_sm in / deliver_sm_resp
// out, enquire_link both ways, the bind, an unknown command (generic_nack out) and a PDU with
// an out-of-bounds command_length (command "invalid"). Counts are checked against what the
// simulator itself saw.
const test = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');

// Parses every skillgate_smpp_pdus_total line into [{labels, value}].
function parsePdus(text) {
  const out = [];
  for (const line of text.split('\n')) {
    const m = /^skillgate_smpp_pdus_total\{([^}]*)\} (\d+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const kv of m[1].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]] = kv[2];
    out.push({ labels, value: Number(m[2]) });
  }
  return out;
}

// Value of the series with exactly these labels (status omitted = a request: no status label).
function val(series, want) {
  const s = series.find((x) => {
    const keys = Object.keys(x.labels);
    return keys.length === Object.keys(want).length && keys.every((k) => x.labels[k] === want[k]);
  });
  return s ? s.value : 0;
}

async function metrics(env) {
  const r = await h.call(env, 'GET', '/metrics');
  assert.strictEqual(r.status, 200);
  return { text: r.text, series: parsePdus(r.text) };
}

function pdu(cmd, seq, len = 16) {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(len >>> 0, 0);
  b.writeUInt32BE(cmd >>> 0, 4);
  b.writeUInt32BE(seq >>> 0, 12);
  return b;
}

test('/metrics counts SMPP PDUs by link, direction, command and status', async () => {
  await h.withEnv({
    http: true,
    links: {
      viettel: {
        sim: { throttleEvery: 3, enquireLinkMs: 300 },
        conf: { enquire_link: 1, throttle_pause_ms: 100 },
      },
    },
  }, async (env) => {
    const sim = env.sim;
    const L = { link: 'viettel' };
    const q = (dir, command, status) => val((env.last || []), status === undefined
      ? { ...L, direction: dir, command } : { ...L, direction: dir, command, status });

    // MT traffic: some submits are throttled (every 3rd), all end up delivered with receipts
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const [r] = await env.sql("INSERT INTO mt_messages (msisdn, text, kind, priority) VALUES ($1, $2, 'api', 0) RETURNING id",
        [`8491300000${i}`, `metrics mt ${i}`]);
      ids.push(Number(r.id));
    }
    await env.waitFor(async () => (await env.sql("SELECT count(*)::int n FROM mt_messages WHERE id = ANY($1) AND state = 'delivered'", [ids]))[0].n === ids.length,
      30000, 'the MTs to be delivered');
    assert.ok(sim.counters.throttled >= 1, `throttled ${sim.counters.throttled}`);

    // MO traffic
    for (let i = 0; i < 3; i++) assert.strictEqual(await sim.deliver({ from: `8491300010${i}`, to: '8079', text: 'HELP' }), 0);
    // their replies out of the way: deliverRaw below reads the next PDU from the daemon
    await env.waitFor(async () => (await env.sql("SELECT count(*)::int n FROM mt_messages WHERE msisdn LIKE '8491300010_' AND state IN ('submitted', 'delivered')"))[0].n >= 3,
      10000, 'the MO replies submitted');

    // an unknown command from the SMSC: generic_nack ESME_RINVCMDID out, "unknown" in
    // (deliverRaw returns the next PDU from the daemon, which may be one of its
    // enquire_links; the generic_nack itself is checked in the counters below)
    const nack = await sim.deliverRaw(pdu(0x00000777, 4711));
    if (nack && nack.command_id === 0x80000000) assert.strictEqual(nack.command_status, 0x03, JSON.stringify(nack));

    // enquire_link both ways (daemon every 1 s, simulator every 300 ms)
    await sim.waitFor(() => sim.counters.enquireLinks >= 2, 5000, 'enquire_link from the daemon');

    // every series agrees with what the simulator saw (poll: the last responses may still be in flight)
    await env.waitFor(async () => {
      env.last = (await metrics(env)).series;
      const c = sim.counters;
      return q('out', 'submit_sm') === c.submits &&
        q('in', 'submit_sm_resp', 'ESME_ROK') === c.accepted &&
        q('in', 'submit_sm_resp', 'ESME_RTHROTTLED') === c.throttled &&
        q('in', 'deliver_sm') === 3 + c.receipts &&
        q('out', 'deliver_sm_resp', 'ESME_ROK') === 3 + c.receipts &&
        q('out', 'enquire_link') >= c.enquireLinks && q('in', 'enquire_link_resp', 'ESME_ROK') >= 1 &&
        q('in', 'enquire_link') >= 1 && q('out', 'enquire_link_resp', 'ESME_ROK') >= 1;
    }, 10000, 'the PDU counters to match the simulator').catch((e) => {
      e.message += `\ncounters ${JSON.stringify(sim.counters)}\n${JSON.stringify(env.last, null, 1)}`;
      throw e;
    });
    assert.ok(sim.counters.receipts >= 1, 'receipts came as deliver_sm');
    assert.strictEqual(q('out', 'bind_transceiver'), 1);
    assert.strictEqual(q('in', 'bind_transceiver_resp', 'ESME_ROK'), 1);
    assert.strictEqual(q('in', 'unknown'), 1);
    assert.strictEqual(q('out', 'generic_nack', 'ESME_RINVCMDID'), 1);
    // requests carry no status label; every response does
    for (const s of env.last) {
      assert.strictEqual(s.labels.link, 'viettel');
      assert.ok(['in', 'out'].includes(s.labels.direction));
      assert.strictEqual('status' in s.labels, /_resp$|^generic_nack$/.test(s.labels.command), JSON.stringify(s.labels));
    }

    // a header with command_length out of bounds: counted as "invalid", the link comes back
    const bad = pdu(0x00000005, 99, 1 << 20);
    await sim.deliverRaw(bad, 3000);
    await sim.waitFor(() => sim.counters.binds >= 2 && sim.boundCount() === 1, 10000, 'the rebind');
    await env.waitFor(async () => {
      env.last = (await metrics(env)).series;
      return q('in', 'invalid') === 1 && q('out', 'bind_transceiver') === 2 &&
        q('in', 'bind_transceiver_resp', 'ESME_ROK') === 2;
    }, 10000, 'the invalid PDU and the second bind to be counted').catch((e) => {
      e.message += `\n${JSON.stringify(env.last, null, 1)}`;
      throw e;
    });

    const { text } = await metrics(env);
    assert.strictEqual(text.match(/^# TYPE skillgate_smpp_pdus_total counter$/mg).length, 1);
    assert.strictEqual(text.match(/^# HELP skillgate_smpp_pdus_total /mg).length, 1);
    assert.ok(!/command="overflow"/.test(text), 'no overflow with one link');
    // the older per-link series are still there
    assert.match(text, /skillgate_link_up\{link="viettel"\} 1/);
  });
});
