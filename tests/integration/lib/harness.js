'use strict';
// Integration harness: a fresh migrated database on the run's private
// PostgreSQL cluster, node-smpp SMSC simulators, and the real skillgated.
//
//   const h = require('./lib/harness');
//   const env = await h.start({ links: { viettel: { /* SmscSim options */ } },
//                               conf: { content: { pass_mark: 4 } }, http: true });
//   env.sim, env.sims.viettel      simulators (tests/sim/smsc.js)
//   env.http                       base URL when http: true
//   await env.sql(text, params)    -> rows
//   await env.skillctl([...args])  -> {code, stdout, stderr}
//   env.log()                      daemon stderr so far
//   await env.kill9(); await env.startDaemon(); await env.stopDaemon()
//   await env.stop()               SIGTERM (asserts a clean exit), drops the database
//
// The cluster comes from SG_PG_PORT (started by tests/run_integration.sh);
// binaries from SG_BIN (default ./bin), so the same tests run against the
// sanitizer build.
const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { Client } = require('pg');
const { SmscSim } = require('../../sim/smsc');

const ROOT = path.resolve(__dirname, '../../..');
const BIN = path.resolve(ROOT, process.env.SG_BIN || 'bin');
const PG_PORT = Number(process.env.SG_PG_PORT || 0);
let dbCounter = 0;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function iniText(sections) {
  let out = '';
  for (const [name, keys] of Object.entries(sections)) {
    out += `[${name}]\n`;
    for (const [k, v] of Object.entries(keys)) {
      if (v === undefined || v === null) continue;
      out += `${k} = ${Array.isArray(v) ? v.join(' ') : v}\n`;
    }
    out += '\n';
  }
  return out;
}

function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, env: { ...process.env, ...(opts.env || {}) }, timeout: opts.timeout || 120000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}

async function waitFor(pred, timeoutMs, what) {
  const t0 = Date.now();
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function adminQuery(sql) {
  const c = new Client({ host: '127.0.0.1', port: PG_PORT, user: 'postgres', database: 'postgres' });
  c.on('error', () => {});
  await c.connect();
  try { return await c.query(sql); } finally { await c.end(); }
}

// Starts everything; on failure stops what was started (so a failed start
// never leaves a simulator or a client holding the test process open).
async function start(opts = {}) {
  const cleanup = [];
  try {
    return await startInner(opts, cleanup);
  } catch (e) {
    for (const fn of cleanup.reverse()) await Promise.resolve().then(fn).catch(() => {});
    throw e;
  }
}

async function startInner(opts, cleanup) {
  if (!PG_PORT) throw new Error('SG_PG_PORT is not set: run through tests/run_integration.sh');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sgtest-'));
  const dbname = `sg_${process.pid}_${++dbCounter}`;
  await adminQuery(`CREATE DATABASE ${dbname}`);
  cleanup.push(() => adminQuery(`DROP DATABASE IF EXISTS ${dbname} WITH (FORCE)`));
  cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const conninfo = `host=127.0.0.1 port=${PG_PORT} dbname=${dbname} user=postgres`;

  const sims = {};
  const linkDefs = opts.links === undefined ? { viettel: {} } : opts.links;
  for (const [name, simOpts] of Object.entries(linkDefs)) {
    const sim = new SmscSim({ port: 0, systemId: 'skillgate', password: 'secret', ...(simOpts.sim || simOpts) });
    await sim.start();
    cleanup.push(() => sim.stop());
    sims[name] = sim;
  }
  const httpPort = opts.http ? await freePort() : 0;
  const sections = {
    gateway: { log_level: opts.logLevel || 'info', shutdown_timeout: 5 },
    database: { conninfo, pool: 4, batch_wait_ms: 2, dedupe_window: 1 },
    http: { listen: opts.http ? `127.0.0.1:${httpPort}` : '' },
    campaign: { quiet_hours: '' },
    content: { dir: path.join(ROOT, 'config/content') },
  };
  for (const [name, simOpts] of Object.entries(linkDefs)) {
    const lk = simOpts.conf || {};
    sections[`smsc ${name}`] = {
      host: '127.0.0.1', port: sims[name].port, system_id: 'skillgate', password: 'secret',
      short_codes: '8079', ussd_codes: '*8079#', default_route: 'yes', enquire_link: 5,
      response_timeout: 5, reconnect_min: 1, reconnect_max: 2, rate: 5000, window: 20, ...lk,
    };
  }
  for (const [sec, keys] of Object.entries(opts.conf || {})) sections[sec] = { ...(sections[sec] || {}), ...keys };
  const confPath = path.join(dir, 'skillgate.conf');
  fs.writeFileSync(confPath, iniText(sections), { mode: 0o600 });

  const mig = await run(path.join(BIN, 'skillctl'), ['-c', confPath, '-s', path.join(ROOT, 'sql'), 'migrate']);
  if (mig.code !== 0) throw new Error(`skillctl migrate failed: ${mig.stderr}`);

  const db = new Client({ host: '127.0.0.1', port: PG_PORT, user: 'postgres', database: dbname });
  db.on('error', () => {}); // tests restart PostgreSQL on purpose
  await db.connect();
  cleanup.push(() => db.end());

  const env = {
    dir, dbname, conninfo, confPath, sims, sim: Object.values(sims)[0], db,
    http: opts.http ? `http://127.0.0.1:${httpPort}` : null, httpPort,
    daemons: [], waitFor,
    async sql(text, params) { return (await env.db.query(text, params)).rows; },
    async reconnectDb() {
      await env.db.end().catch(() => {});
      env.db = new Client({ host: '127.0.0.1', port: PG_PORT, user: 'postgres', database: dbname });
      env.db.on('error', () => {});
      await env.db.connect();
    },
    skillctl(args, o = {}) { return run(path.join(BIN, 'skillctl'), ['-c', confPath, '-s', path.join(ROOT, 'sql'), ...args], o); },
    log(i = 0) { return env.daemons[i] ? env.daemons[i].log : ''; },
    async startDaemon(o = {}) {
      const d = { log: '', exited: null };
      const child = spawn(path.join(BIN, 'skillgated'), ['-f', '-c', o.confPath || confPath], {
        cwd: ROOT, env: { ...process.env, ...(o.env || {}) }, stdio: ['ignore', 'ignore', 'pipe'],
      });
      d.child = child;
      d.exitPromise = new Promise((resolve) => child.on('exit', (code, sig) => { d.exited = { code, sig }; resolve(d.exited); }));
      child.stderr.on('data', (b) => {
        d.log += b.toString();
        if (process.env.SG_TEST_VERBOSE) process.stderr.write(b);
      });
      env.daemons.push(d);
      await waitFor(() => d.exited || /store: connection \d+ up/.test(d.log), 20000, 'the daemon to reach PostgreSQL');
      if (d.exited) throw new Error(`skillgated exited at start: ${JSON.stringify(d.exited)}\n${d.log}`);
      if (o.waitBind !== false) {
        for (const [name, sim] of Object.entries(sims)) {
          const want = (sections[`smsc ${name}`].bind === 'transmitter+receiver') ? 2 : 1;
          await waitFor(() => sim.boundCount() >= want, 20000, `a bind on link ${name}`);
        }
      }
      if (env.http) await waitFor(async () => {
        try { const r = await fetch(`${env.http}/healthz`); return r.status > 0; } catch { return false; }
      }, 10000, 'HTTP');
      return d;
    },
    async stopDaemon(i = env.daemons.length - 1, { expectClean = true } = {}) {
      const d = env.daemons[i];
      if (!d || d.exited) return d && d.exited;
      d.child.kill('SIGTERM');
      const t = setTimeout(() => d.child.kill('SIGKILL'), 10000);
      const ex = await d.exitPromise;
      clearTimeout(t);
      if (expectClean && (ex.code !== 0)) throw new Error(`skillgated did not stop cleanly: ${JSON.stringify(ex)}\n${d.log.slice(-4000)}`);
      return ex;
    },
    async kill9(i = env.daemons.length - 1) {
      const d = env.daemons[i];
      d.child.kill('SIGKILL');
      await d.exitPromise;
    },
    async stop() {
      for (let i = 0; i < env.daemons.length; i++) {
        if (!env.daemons[i].exited) await env.stopDaemon(i, { expectClean: false });
      }
      for (const sim of Object.values(sims)) await sim.stop().catch(() => {});
      await env.db.end().catch(() => {});
      await adminQuery(`DROP DATABASE IF EXISTS ${dbname} WITH (FORCE)`).catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  cleanup.push(() => { for (const d of env.daemons) if (!d.exited) d.child.kill('SIGKILL'); });
  if (opts.daemon !== false) await env.startDaemon();
  return env;
}

// One HTTP call to the daemon: {status, json (or null), text, headers}.
async function call(env, method, p, { token, body, type } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (type) headers['Content-Type'] = type;
  const r = await fetch(env.http + p, { method, headers, body });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text, headers: r.headers };
}

// Sanitizer reports in a daemon's log (the tests also run against an ASan/UBSan build).
const SANITIZER = /ERROR: (Address|Leak)Sanitizer|runtime error:/;

// Runs fn(env) on a fresh env and stops it; a failure gets the daemon log's
// tail, and a sanitizer report in any daemon's log fails a passing test.
async function withEnv(opts, fn) {
  const env = await start(opts);
  let ok = false;
  try {
    const r = await fn(env);
    ok = true;
    return r;
  } catch (e) {
    e.message += `\n---- daemon log (tail) ----\n${env.log().slice(-3000)}`;
    throw e;
  } finally {
    await env.stop();
    const bad = env.daemons.find((d) => SANITIZER.test(d.log));
    if (ok && bad) {
      const at = bad.log.search(SANITIZER);
      throw new Error(`sanitizer report:\n${bad.log.slice(Math.max(0, at - 200), at + 3000)}`);
    }
  }
}

module.exports = { start, withEnv, waitFor, call, freePort, iniText, run, ROOT, BIN, PG_PORT, adminQuery };
