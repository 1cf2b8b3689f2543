'use strict';
/*
 * lib.js — helpers of the bench orchestrator (bench.js): databases on the bench's private
 * PostgreSQL, skillgated configs and processes, simulator processes (smscsim, or simproc.js with
 * BENCH_SIM=node), CPU and RSS sampling from /proc, and statistics.
 */
const { spawn, fork, execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { Client } = require('pg');

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.resolve(ROOT, process.env.SG_BIN || 'bin');
const PG_PORT = Number(process.env.SG_PG_PORT || 0);
const PG_DIR = process.env.SG_PG_DIR || '';
const CLK = 100; /* USER_HZ */

/* Children still running when the bench exits (an error) are killed. */
const live = new Set();
function track(child) {
	live.add(child);
	child.once('exit', () => live.delete(child));
	return child;
}
process.on('exit', () => { for (const c of live) try { c.kill('SIGKILL'); } catch { /* gone */ } });
/* and when it is interrupted: a signal to the bench alone (not its process
 * group) left bearerbox and smsbox running */
process.once('SIGINT', () => process.exit(130));
process.once('SIGTERM', () => process.exit(143));

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.unref();
		s.on('error', reject);
		s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
	});
}

function run(cmd, args, opts = {}) {
	return new Promise((resolve) => {
		execFile(cmd, args, { cwd: ROOT, timeout: opts.timeout || 600000, maxBuffer: 64 << 20, env: { ...process.env, ...(opts.env || {}) } },
			(err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
	});
}

async function pgClient(db) {
	const c = new Client({ host: '127.0.0.1', port: PG_PORT, user: 'postgres', database: db || 'postgres' });
	c.on('error', () => {});
	await c.connect();
	return c;
}

async function adminQuery(sql) {
	const c = await pgClient();
	try { return await c.query(sql); } finally { await c.end(); }
}

function iniText(sections) {
	let out = '';
	for (const [name, keys] of Object.entries(sections)) {
		out += `[${name}]\n`;
		for (const [k, v] of Object.entries(keys)) if (v !== undefined && v !== null) out += `${k} = ${v}\n`;
		out += '\n';
	}
	return out;
}

/* A fresh migrated database; returns {name, conninfo, db (pg client)}. */
async function createDb(name) {
	await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
	await adminQuery(`CREATE DATABASE ${name}`);
	const conninfo = `host=127.0.0.1 port=${PG_PORT} dbname=${name} user=postgres`;
	const tmpConf = path.join(process.env.BENCH_DIR, `${name}-migrate.conf`);
	fs.writeFileSync(tmpConf, iniText({ database: { conninfo } }), { mode: 0o600 });
	const mig = await run(path.join(BIN, 'skillctl'), ['-c', tmpConf, '-s', path.join(ROOT, 'sql'), 'migrate']);
	if (mig.code !== 0) throw new Error(`skillctl migrate failed: ${mig.stderr}`);
	const db = await pgClient(name);
	return { name, conninfo, db };
}

/* skillgated config: links = [{name, port, prefixes, rate, window, dflt}]. */
function daemonConf(file, conninfo, links, extra = {}) {
	const sections = {
		gateway: { log_level: 'info', shutdown_timeout: 5, link_lock: process.env.BENCH_LINK_LOCK || 'yes' },
		database: { conninfo, pool: Number(process.env.BENCH_POOL || 4), batch_max: 256, batch_wait_ms: Number(process.env.BENCH_BATCH_WAIT_MS || 2), dedupe_window: 0, slow_ms: 80, ...(extra.database || {}) },
		http: { listen: process.env.BENCH_HTTP || '' },
		campaign: { quiet_hours: '', daily_cap: 0 }, /* runs re-use numbers: no per-number daily cap */
		content: { dir: path.join(ROOT, 'config/content'), ...(extra.content || {}) },
	};
	for (const l of links) {
		sections[`smsc ${l.name}`] = {
			host: '127.0.0.1', port: l.port, system_id: 'skillgate', password: 'secret', bind: 'transceiver',
			window: l.window || 100, rate: l.rate || 0, short_codes: '8079', ussd_codes: '*8079#',
			prefixes: l.prefixes || '', default_route: l.dflt ? 'yes' : 'no', enquire_link: 30, response_timeout: 10,
			reconnect_min: 1, reconnect_max: 2, registered_delivery: 1, text: l.text || 'auto',
		};
	}
	fs.writeFileSync(file, iniText(sections), { mode: 0o600 });
	return file;
}

class Daemon {
	constructor(conf) { this.conf = conf; this.log = ''; this.exited = null; }
	async start(waitLinks) {
		this.child = track(spawn(path.join(BIN, 'skillgated'), ['-f', '-c', this.conf], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] }));
		this.pid = this.child.pid;
		this.exitP = new Promise((r) => this.child.on('exit', (code, sig) => { this.exited = { code, sig }; r(this.exited); }));
		this.slow = 0; // statements of 80 ms or more ([database] slow_ms), counted as logged
		let partial = ''; // a line split across two reads is counted when whole
		this.child.stderr.on('data', (b) => {
			const s = b.toString();
			const lines = (partial + s).split('\n');
			partial = lines.pop();
			this.slow += lines.filter((l) => l.includes('slow statement')).length;
			if (this.log.length < 1 << 20) this.log += s;
		});
		const t = Date.now();
		while (!this.exited && !/store: connection \d+ up/.test(this.log)) {
			if (Date.now() - t > 20000) throw new Error(`skillgated did not reach PostgreSQL:\n${this.log}`);
			await sleep(20);
		}
		if (this.exited) throw new Error(`skillgated exited: ${JSON.stringify(this.exited)}\n${this.log}`);
		for (const s of waitLinks || []) {
			const r = await s.call('bound', { n: 1, ms: 20000 });
			if (r.bound < 1) throw new Error(`no bind on the simulator:\n${this.log}`);
		}
	}
	async stop() {
		if (!this.child || this.exited) return;
		this.child.kill('SIGTERM');
		const t = setTimeout(() => this.child.kill('SIGKILL'), 10000);
		await this.exitP;
		clearTimeout(t);
	}
}

/*
 * A simulator process. Two implementations of the same requests and replies: build/bench/smscsim
 * (tests/bench/smscsim.c, `make bench-sim`; JSON lines on stdin/stdout), the default when built,
 * because the two Node simulators took ~45 % of the 2-core box in the MO runs (§7: the simulator
 * must not be the bottleneck); and simproc.js (Node, IPC) hosting tests/sim/smsc.js, the
 * reference, with BENCH_SIM=node. BENCH_SIM_BIN names another C binary (e.g. a sanitizer build).
 */
const SIM_BIN = process.env.BENCH_SIM_BIN || path.join(ROOT, 'build/bench/smscsim');
const SIM_KIND = process.env.BENCH_SIM || (fs.existsSync(SIM_BIN) ? 'c' : 'node');

class Sim {
	constructor(name) { this.name = name; this.n = 0; this.wait = new Map(); }
	async start(simOpts) {
		if (SIM_KIND === 'c') this._spawnC(); else this._forkNode();
		this.pid = this.child.pid;
		this.child.on('exit', () => { for (const w of this.wait.values()) w.reject(new Error(`${this.name} exited`)); this.wait.clear(); });
		const r = await this.call('start', { sim: simOpts });
		this.port = r.port;
		return this;
	}
	_spawnC() {
		if (!fs.existsSync(SIM_BIN)) throw new Error(`${SIM_BIN} is missing: make bench-sim (or BENCH_SIM=node)`);
		this.child = track(spawn(SIM_BIN, [], { stdio: ['pipe', 'pipe', 'inherit'] }));
		this.child.stdin.on('error', () => {}); /* EPIPE once it exited: 'exit' rejects the calls */
		let buf = '';
		this.child.stdout.setEncoding('utf8');
		this.child.stdout.on('data', (s) => {
			buf += s;
			for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) this._reply(JSON.parse(buf.slice(0, i)));
		});
		this.send = (m) => this.child.stdin.write(JSON.stringify(m) + '\n');
	}
	_forkNode() {
		/* a young generation large enough that the simulators' garbage collection
		 * does not stall them for tens of ms (it showed in the latency figures);
		 * BENCH_SIM_NODE_ARGS adds node options, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p" */
		const execArgv = ['--max-semi-space-size=64',
			...(process.env.BENCH_SIM_NODE_ARGS || '').split(' ').filter(Boolean)];
		this.child = track(fork(path.join(__dirname, 'simproc.js'), [], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
		this.child.on('message', (m) => this._reply(m));
		this.send = (m) => this.child.send(m);
	}
	_reply(m) {
		const w = this.wait.get(m.id);
		if (!w) return;
		this.wait.delete(m.id);
		if (m.ok) w.resolve(m); else w.reject(new Error(`${this.name}: ${m.error}`));
	}
	call(cmd, args = {}) {
		const id = ++this.n;
		return new Promise((resolve, reject) => {
			this.wait.set(id, { resolve, reject });
			this.send({ id, cmd, ...args });
		});
	}
	async stop() {
		if (!this.child || this.child.exitCode !== null) return;
		const p = new Promise((r) => this.child.once('exit', r));
		this.call('stop').catch(() => {});
		const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
		await p;
		clearTimeout(t);
	}
}

/* ---------------------------------------------------------------- /proc */

function procTicks(pid) {
	try {
		const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
		const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
		return Number(f[11]) + Number(f[12]); /* utime + stime */
	} catch { return 0; }
}

function childrenOf(ppid) {
	const out = [];
	for (const d of fs.readdirSync('/proc')) {
		if (!/^\d+$/.test(d)) continue;
		try {
			const s = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
			const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
			if (Number(f[1]) === ppid) out.push(Number(d));
		} catch { /* gone */ }
	}
	return out;
}

function postmasterPid() {
	try { return Number(fs.readFileSync(path.join(PG_DIR, 'data/postmaster.pid'), 'utf8').split('\n')[0]); } catch { return 0; }
}

/* CPU sampler: named groups of pids (functions returning pids), fraction of one core each. */
class CpuMeter {
	constructor(groups) { this.groups = groups; }
	snap() {
		const t = process.hrtime.bigint();
		const v = {};
		for (const [k, f] of Object.entries(this.groups)) {
			let ticks = 0;
			for (const pid of f()) ticks += procTicks(pid);
			v[k] = ticks;
		}
		return { t, v };
	}
	begin() { this.s0 = this.snap(); }
	end() {
		const s1 = this.snap();
		const secs = Number(s1.t - this.s0.t) / 1e9;
		const out = {};
		for (const k of Object.keys(s1.v)) out[k] = Math.round(((s1.v[k] - this.s0.v[k]) / CLK / secs) * 100) / 100;
		return out;
	}
}

function pgPids() {
	const pm = postmasterPid();
	return pm ? [pm, ...childrenOf(pm)] : [];
}

function rssKiB(pid) {
	try {
		const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
		const g = (k) => Number((s.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) || [0, 0])[1]);
		return { rss: g('VmRSS'), hwm: g('VmHWM') };
	} catch { return { rss: 0, hwm: 0 }; }
}

/* ---------------------------------------------------------------- stats */

function median(a) {
	const s = a.filter((x) => x != null && Number.isFinite(x)).sort((x, y) => x - y);
	if (!s.length) return null;
	return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function fmt(x) {
	if (x == null || !Number.isFinite(x)) return 'n/a';
	if (Math.abs(x) >= 100) return String(Math.round(x));
	if (Math.abs(x) >= 10) return x.toFixed(1);
	return x.toFixed(2);
}

module.exports = {
	ROOT, BIN, SIM_KIND, PG_PORT, sleep, freePort, run, pgClient, adminQuery, iniText, createDb, daemonConf, Daemon, Sim,
	CpuMeter, pgPids, track, rssKiB, median, fmt, procTicks, childrenOf,
};
