'use strict';
// Two daemons on one database (§8, issue 11 point 1): each SMPP link is bound
// by the one instance holding its advisory lock; when that instance is killed
// (-9) the survivor takes the lock and binds within link_lock_interval plus a
// few seconds, traffic resumes, and the MTs the dead instance left
// 'submitting' are queued again (instance heartbeat, sql/007_instances.sql)
// and sent by the survivor.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');

const INTERVAL = 2; // [gateway] link_lock_interval for this test

async function healthz(url) {
  const r = await fetch(`${url}/healthz`);
  return r.json();
}

async function moReply(env, from) {
  const before = env.sim.messages().filter((m) => m.to === from).length;
  assert.equal(await env.sim.deliver({ from, to: '8079', text: 'HELP' }), 0);
  await env.sim.waitFor(() => env.sim.messages().filter((m) => m.to === from).length > before, 10000);
}

test('two daemons, one link: one bind; kill -9 the holder, the survivor takes over', async (t) => {
  const env = await h.start({
    http: true,
    conf: { gateway: { instance_name: 'alpha', link_lock_interval: INTERVAL } },
  });
  try {
    // the second instance: same database and SMSC, another name and HTTP port
    const port2 = await h.freePort();
    const conf2 = path.join(env.dir, 'beta.conf');
    fs.writeFileSync(conf2, fs.readFileSync(env.confPath, 'utf8')
      .replace(/^instance_name = .*$/m, 'instance_name = beta')
      .replace(/^listen = .*$/m, `listen = 127.0.0.1:${port2}`), { mode: 0o600 });
    const http2 = `http://127.0.0.1:${port2}`;
    await env.startDaemon({ confPath: conf2, waitBind: false });
    await env.waitFor(async () => {
      try { return (await healthz(http2)).links[0].state === 'standby'; } catch { return false; }
    }, 10000, 'beta to report its link standby');
    // a few lock rounds later, still exactly one bind for that system_id
    await new Promise((r) => setTimeout(r, (INTERVAL * 2 + 1) * 1000));
    assert.equal(env.sim.binds.filter((b) => b.systemId === 'skillgate').length, 1, 'one bind only');
    assert.equal(env.sim.boundCount(), 1);
    assert.equal((await healthz(env.http)).links[0].state, 'bound');
    assert.equal((await healthz(http2)).links[0].state, 'standby');

    // MO traffic through the holder
    await moReply(env, '84911000001');
    const owners = await env.sql("SELECT DISTINCT owner FROM mt_messages WHERE msisdn = '84911000001'");
    assert.deepEqual(owners.map((r) => r.owner), ['alpha']);

    // a backlog alpha has sent but not had answered: 'submitting', owned by alpha
    env.sim.opts.respDelayMs = 60000;
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const [r] = await env.sql("INSERT INTO mt_messages (msisdn, text, kind, priority) VALUES ($1, $2, 'api', 0) RETURNING id",
        [`8491200000${i}`, `backlog ${i}`]);
      ids.push(Number(r.id));
    }
    await env.waitFor(async () => (await env.sql(
      "SELECT count(*)::int AS n FROM mt_messages WHERE id = ANY($1) AND state = 'submitting' AND owner = 'alpha'", [ids]))[0].n === ids.length,
    10000, 'alpha to claim the backlog');
    await env.sim.waitFor(() => env.sim.submits.filter((s) => /^backlog/.test(s.text)).length >= ids.length, 10000);

    // kill -9 the holder
    const bindsBefore = env.sim.binds.length;
    await env.kill9(0);
    const t0 = Date.now();
    env.sim.opts.respDelayMs = 0;
    await env.waitFor(() => env.sim.binds.length > bindsBefore && env.sim.boundCount() === 1,
      (INTERVAL + 5) * 1000, 'beta to bind the link');
    const took = Date.now() - t0;
    assert.ok(took <= (INTERVAL + 5) * 1000, `takeover in ${took} ms`);
    t.diagnostic(`takeover in ${took} ms`);
    await env.waitFor(async () => (await healthz(http2)).links[0].state === 'bound', 5000, 'beta bound');

    // traffic resumes on the survivor
    await moReply(env, '84911000002');
    const owners2 = await env.sql("SELECT DISTINCT owner FROM mt_messages WHERE msisdn = '84911000002'");
    assert.deepEqual(owners2.map((r) => r.owner), ['beta']);

    // alpha's in-flight backlog is queued again (alpha silent for 3 intervals) and sent by beta
    let rows;
    await env.waitFor(async () => {
      rows = await env.sql('SELECT id, state, owner, maybe_duplicate FROM mt_messages WHERE id = ANY($1)', [ids]);
      return rows.every((r) => ['submitted', 'delivered'].includes(r.state));
    }, INTERVAL * 3 * 1000 + 15000, 'the backlog to be sent by beta').catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(rows)}`);
    });
    assert.ok(rows.every((r) => r.owner === 'beta' && r.maybe_duplicate), JSON.stringify(rows));
    assert.match(env.log(1), /MT left in flight by a dead instance queued again/);
  } finally {
    await env.stop();
  }
});
