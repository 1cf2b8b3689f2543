'use strict';
// The foundation (issue 2): config check, migrations, PostgreSQL restarts,
// clean shutdown, masked logs.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');

const PGDIR = process.env.SG_PG_DIR;
let env;

test.before(async () => { env = await h.start(); });
test.after(async () => { await env.stop(); });

async function replyTo(msisdn, text) {
  const before = env.sim.messages().filter((m) => m.to === msisdn).length;
  const st = await env.sim.deliver({ from: msisdn, to: '8079', text });
  if (st !== 0) return { status: st };
  await env.sim.waitFor(() => env.sim.messages().filter((m) => m.to === msisdn).length > before, 15000);
  return { status: 0, text: env.sim.messages().filter((m) => m.to === msisdn)[before].text };
}

test('skillgated -t accepts the sample config and reports every seeded error with its line', async () => {
  const ok = await h.run(path.join(h.BIN, 'skillgated'), ['-t', '-c', 'config/skillgate.conf']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  const bad = path.join(env.dir, 'bad.conf');
  fs.writeFileSync(bad, '[database]\nconninfo = x\npool = 0\n[smsc a]\nhost = h\nsystem_id = s\nwindow = lots\nfoo = 1\n');
  const r = await h.run(path.join(h.BIN, 'skillgated'), ['-t', '-c', bad]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, new RegExp(`${bad}:3: pool: out of bounds`));
  assert.match(r.stdout, new RegExp(`${bad}:7: window: not an integer`));
  assert.match(r.stdout, new RegExp(`${bad}:8: unknown key 'foo'`));
});

test('skillctl migrate twice leaves one schema version per migration', async () => {
  const again = await env.skillctl(['migrate']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /0 applied/);
  const files = fs.readdirSync(path.join(h.ROOT, 'sql')).filter((f) => /^\d+_.*\.sql$/.test(f));
  const rows = await env.sql('SELECT name FROM schema_version ORDER BY name');
  assert.deepEqual(rows.map((r) => r.name), files.sort());
});

test('the daemon survives a PostgreSQL restart without being restarted', async () => {
  assert.equal((await replyTo('84912340001', 'HELP')).status, 0);
  await h.run('bash', [path.join(h.ROOT, 'scripts/pg.sh'), 'stop', PGDIR]);
  try {
    // while the database is down an MO gets a temporary error (the SMSC retries later)
    const down = await env.sim.deliver({ from: '84912340002', to: '8079', text: 'HELP' });
    assert.equal(down, 0x64, 'ESME_RX_T_APPN while PostgreSQL is down');
  } catch (e) {
    throw new Error(`${e.message}\n--- daemon log ---\n${env.log().slice(-3000)}`);
  } finally {
    // the cluster is shared by every test file: always bring it back
    await h.run('bash', [path.join(h.ROOT, 'scripts/pg.sh'), 'start', PGDIR, String(h.PG_PORT)]);
  }
  await env.reconnectDb();
  // the pool of 4 (not the link lock connection, "(1/1)") reconnects
  await env.waitFor(() => (env.log().match(/store: connection \d+ up \(\d+\/4\)/g) || []).length >= 5, 20000, 'a reconnect');
  const r = await replyTo('84912340002', 'HELP');
  assert.equal(r.status, 0);
  assert.ok(r.text.length > 0);
});

test('SIGHUP reloads the content; broken content is refused and the old one kept', async () => {
  // a private copy of the content, so the test can edit it
  const dir = path.join(env.dir, 'content');
  fs.cpSync(path.join(h.ROOT, 'config/content'), dir, { recursive: true });
  const conf = fs.readFileSync(env.confPath, 'utf8').replace(/^dir = .*$/m, `dir = ${dir}`);
  fs.writeFileSync(env.confPath, conf);
  await env.stopDaemon();
  await env.startDaemon();
  const d = env.daemons[env.daemons.length - 1];
  const msgs = path.join(dir, 'en/messages.txt');
  fs.writeFileSync(msgs, fs.readFileSync(msgs, 'utf8').replace(/^help = .*$/m, 'help = Reloaded help text.'));
  assert.equal((await replyTo('84912340010', 'EN')).status, 0);
  d.child.kill('SIGHUP');
  await env.waitFor(() => /SIGHUP: content reloaded/.test(d.log), 5000, 'the reload');
  assert.equal((await replyTo('84912340010', 'HELP')).text, 'Reloaded help text.');
  fs.writeFileSync(msgs, fs.readFileSync(msgs, 'utf8').replace(/^help = .*$/m, 'help = {nonsense}'));
  d.child.kill('SIGHUP');
  await env.waitFor(() => /keeping the loaded content/.test(d.log), 5000, 'the refusal');
  assert.match(d.log, /messages.txt:\d+: /, 'the error names file and line');
  await new Promise((r) => setTimeout(r, 1100)); // same text again: past the dedupe window
  assert.equal((await replyTo('84912340010', 'HELP')).text, 'Reloaded help text.');
});

test('phone numbers are masked in the log', async () => {
  await replyTo('84912340003', 'HOC 9');
  assert.ok(!env.log().includes('84912340003'), 'the full number never appears');
});

// [database] slow_ms: a statement whose round trip reaches it is logged with
// its duration and its text, never its parameters. The heartbeat is held up
// on purpose by a lock on its row.
test('a slow statement is logged with its time and text, without its parameters', async () => {
  const e = await h.start({ conf: { database: { slow_ms: 300 }, gateway: { link_lock_interval: 1 } } });
  try {
    await e.waitFor(async () => (await e.sql('SELECT count(*)::int AS c FROM instances'))[0].c > 0, 10000, 'a heartbeat');
    await e.sql('BEGIN');
    await e.sql('SELECT * FROM instances FOR UPDATE');
    await new Promise((r) => setTimeout(r, 1500));
    await e.sql('COMMIT');
    await e.waitFor(() => /slow statement: \d+ ms, commit included: SELECT sg_instance_beat\(\$1, \$2::int\)/.test(e.log()), 5000, 'the slow heartbeat logged');
    const ms = Number(e.log().match(/slow statement: (\d+) ms/)[1]);
    assert.ok(ms >= 300, `logged ${ms} ms`);
    const [name] = await e.sql('SELECT name FROM instances');
    assert.ok(!e.log().split('\n').filter((l) => l.includes('slow statement')).some((l) => l.includes(name.name)), 'parameters are not logged');
  } finally {
    await e.stop();
  }
});

test('SIGTERM stops the daemon cleanly within 5 s with an unbind', async () => {
  const unbinds = env.sim.counters.unbinds || 0;
  const t0 = Date.now();
  const ex = await env.stopDaemon();
  assert.equal(ex.code, 0);
  assert.ok(Date.now() - t0 < 5000, `stopped in ${Date.now() - t0} ms`);
  assert.ok((env.sim.counters.unbinds || 0) > unbinds, 'the SMSC saw an unbind');
  assert.match(env.log(), /stopped cleanly/);
});
