'use strict';
/*
 * sqlreplay.js — the MO path's statements of a bench run, replayed on one connection, with the
 * CPU time of PostgreSQL's backend per function (a tool for judging a change of the SQL: the same
 * calls on the same data every time, so a few per cent show, where the bench's own runs vary by
 * a third on the project's machine).
 *
 * Capture (a quick MO bench with every statement logged and the log kept):
 *   BENCH_PG_LOG=/tmp/cap.log BENCH_PG_CONF="log_min_duration_statement = 0" BENCH_QUICK=1 \
 *     BENCH_RUNS=1 BENCH_ONLY=mo BENCH_NO_KANNEL=1 BENCH_NO_FOLD=1 bash tests/bench/run.sh
 * Replay (a private PostgreSQL, the migrations of the working tree, fsync off: CPU is measured):
 *   bash tests/bench/sqlreplay.sh /tmp/cap.log [passes]
 *
 * The daemon's sg_mo_prepare, sg_mo_commit and sg_mt_outcomes calls are replayed in the order
 * they finished. The daemon has one MO batch in flight at a time, so the commits draw the same
 * message ids in the replay as in the capture, and each sg_mt_outcomes call finds its messages.
 * Prints, per function: calls, rows returned, the backend's CPU time (/proc/PID/schedstat, in
 * nanoseconds: time on a CPU, not waiting) in all and per MO committed; once for every call, once
 * for the saturated part (batches of 128 MOs or more, as in the throughput runs, and the
 * sg_mt_outcomes calls after them), where a batch's fixed costs weigh least, and once for the
 * smaller batches after them (the latency runs on the grown database).
 */
const fs = require('node:fs');
const readline = require('node:readline');
const { Client } = require('pg');

const KINDS = ['sg_mo_prepare', 'sg_mo_commit', 'sg_mt_outcomes'];
const { REPLAY_UNTIL: UNTIL, REPLAY_PGSS: PGSS, REPLAY_PREPARED: PREPARED } = process.env;
const PAUSE_AFTER = Number(process.env.REPLAY_PAUSE_AFTER || 0);

/* '$1 = '...', $2 = NULL, ...' -> ['...', null, ...] ('' inside a value is one quote). */
function parseParams(s) {
	const out = [];
	let i = 0;
	while (i < s.length) {
		const m = /^\$(\d+) = /.exec(s.slice(i, i + 16));
		if (!m) break;
		i += m[0].length;
		if (s.startsWith('NULL', i)) {
			out.push(null);
			i += 4;
		} else if (s[i] === "'") {
			let v = '';
			i++;
			for (;;) {
				const q = s.indexOf("'", i);
				if (q < 0) throw new Error('unterminated parameter');
				v += s.slice(i, q);
				if (s[q + 1] === "'") {
					v += "'";
					i = q + 2;
				} else {
					i = q + 1;
					break;
				}
			}
			out.push(v);
		} else throw new Error(`parameter ${m[1]}: unexpected ${s.slice(i, i + 10)}`);
		if (s.startsWith(', ', i)) i += 2;
	}
	return out;
}

async function readCalls(file) {
	const calls = [];
	const rl = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
	let pending = null;
	for await (const line of rl) {
		const ex = /LOG: {2}duration: [0-9.]+ ms {2}execute [^:]*: (.*)$/.exec(line);
		if (ex) {
			const kind = KINDS.find((k) => ex[1].includes(k));
			pending = kind ? { kind, text: ex[1] } : null;
			continue;
		}
		if (pending) {
			const d = /DETAIL: {2}parameters: (.*)$/.exec(line);
			if (d) calls.push({ ...pending, params: parseParams(d[1]) });
			pending = null;
		}
	}
	return calls;
}

function cpuNs(pid) {
	return Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
}

async function main() {
	const [file, conninfo] = process.argv.slice(2);
	if (!file || !conninfo) {
		console.error('usage: node sqlreplay.js CAPTURE.log CONNINFO-URL');
		process.exit(2);
	}
	const calls = await readCalls(file);
	const db = new Client({ connectionString: conninfo });
	await db.connect();
	await db.query('SET synchronous_commit = off');
	const pid = (await db.query('SELECT pg_backend_pid() AS p')).rows[0].p;
	const part = () => ({ mos: 0, ...Object.fromEntries(KINDS.map((k) => [k, { calls: 0, rows: 0, ns: 0 }])) });
	const all = part();
	const big = part();
	const after = part(); /* small batches after the big ones: the latency runs on a grown database */
	let inBig = false;
	const t0 = Date.now();
	for (const c of calls) {
		if (c.kind === 'sg_mo_prepare') {
			const was = inBig;
			inBig = c.params[2].split(',').length >= 128; /* msisdns: digits */
			const bigBegin = inBig && !was && big.mos === 0; /* the first big batch */
			const afterBegin = !inBig && was && after.mos === 0; /* the first smaller one after */
			/* REPLAY_UNTIL=big: stop where the throughput runs begin; =small: where they end */
			if ((bigBegin && UNTIL === 'big') || (afterBegin && UNTIL === 'small')) break;
			/* REPLAY_PGSS: its counters cover the batches from the first big one on,
			 * or (REPLAY_PGSS=after) from the first smaller one after them */
			if ((bigBegin && PGSS) || (afterBegin && PGSS === 'after')) await db.query('SELECT pg_stat_statements_reset()');
			/* REPLAY_PAUSE_AFTER=S: print the backend's pid there and wait S seconds (to attach perf) */
			if (afterBegin && PAUSE_AFTER) {
				console.log(`backend ${pid}: the smaller batches after the big ones begin in ${PAUSE_AFTER} s`);
				await new Promise((r) => setTimeout(r, 1000 * PAUSE_AFTER));
			}
		}
		const a = cpuNs(pid);
		/* REPLAY_PREPARED=1: named prepared statements, as the daemon sends them */
		const r = await db.query({ name: PREPARED ? c.kind : undefined, text: c.text, values: c.params });
		const b = cpuNs(pid);
		for (const p of inBig ? [all, big] : big.mos > 0 ? [all, after] : [all]) {
			const s = p[c.kind];
			s.calls++;
			s.rows += r.rowCount;
			s.ns += b - a;
			if (c.kind === 'sg_mo_commit') p.mos += r.rows.filter((x) => x.kind === 'mo').length;
		}
	}
	await db.end();
	console.log(`${calls.length} calls, ${all.mos} MOs committed, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
	for (const [name, p] of [['every call', all], ['batches of 128 MOs or more', big],
		['smaller batches after those', after]]) {
		const total = KINDS.reduce((n, k) => n + p[k].ns, 0);
		console.log(`  ${name}: ${p.mos} MOs`);
		for (const k of KINDS) {
			const s = p[k];
			console.log(`  ${k.padEnd(16)} calls ${String(s.calls).padStart(6)}  rows ${String(s.rows).padStart(7)}  cpu ${(s.ns / 1e9).toFixed(2).padStart(6)} s  ${(s.ns / 1000 / p.mos).toFixed(1).padStart(6)} us/MO`);
		}
		console.log(`  ${'all'.padEnd(16)} ${' '.repeat(32)}cpu ${(total / 1e9).toFixed(2).padStart(6)} s  ${(total / 1000 / p.mos).toFixed(1).padStart(6)} us/MO`);
	}
}

main().catch((e) => {
	console.error(e);
	process.exit(1);
});
