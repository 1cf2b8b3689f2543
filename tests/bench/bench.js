'use strict';
/*
 * bench.js — the §7 figures of PRODUCT.md (issue 10), run by tests/bench/run.sh (`make bench`).
 *
 * Every figure is measured `runs` times and printed as one line:
 *   name  median M min A max B unit  (target ...)
 * followed by the Kannel ratios and a JSON file in bench/results/. CPU of skillgated, PostgreSQL
 * and each simulator process is sampled during the runs; a simulator process above 90 % of a core
 * is reported as the bottleneck ("the bench says so").
 *
 * Scenarios (BENCH_ONLY selects): mo (MO->reply throughput, closed loop; latency at 1,000 MO/s open
 * loop), kannel (the same MO->reply and MT through bearerbox+smsbox), mt (200,000 queued broadcast
 * MTs straight into mt_messages), rate (a link rate of 500/s held over a minute), sessions (RSS
 * with 100,000 numbers mid-quiz), reports (sg_coverage over 1,000,000 phones in 300,000 households).
 * Bench config differs from the sample in: dedupe_window = 0 (residents answer "A" more than once
 * within seconds), link window = 100, rate = 0 (unlimited) except in the rate scenario, log_level info.
 */
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const L = require('./lib');
const kannel = require('./kannel');

const QUICK = !!process.env.BENCH_QUICK;
const RUNS = Number(process.env.BENCH_RUNS || 3);
const NSIMS = Number(process.env.BENCH_SIMS || 2);
const ONLY = (process.env.BENCH_ONLY || 'mo,kannel,mt,rate,sessions,reports').split(',');
const NO_KANNEL = !!process.env.BENCH_NO_KANNEL;
const LAT_ONLY = !!process.env.BENCH_LAT_ONLY; /* mo: the latency runs only */
const D = {
	moSecs: QUICK ? 10 : 60, moWarm: QUICK ? 3000 : 5000, moConc: Number(process.env.BENCH_MO_CONC || 3000),
	latSecs: QUICK ? 5 : 15, latRate: Number(process.env.BENCH_LAT_RATE || 1000),
	mtCount: QUICK ? 50000 : 200000, kannelMt: QUICK ? 20000 : 100000,
	rateSecs: QUICK ? 15 : 60, rate: 500,
	sessions: QUICK ? 20000 : 100000,
	households: 300000, phones: 1000000,
};
const SCRIPT = ['HOC 1', 'A', 'B', 'C', 'D', 'A'];

const WAL_AHEAD = Number(process.env.BENCH_WAL_AHEAD || 0); /* WAL segments run.sh put in place (a server that has been running); 0: a new cluster's */
/* postgresql.conf lines run.sh added (its settings, then BENCH_PGSS / BENCH_EXPLAIN / BENCH_PG_CONF ones) */
const PG_SETTINGS = (process.env.BENCH_PG_SETTINGS || '').split('\n').map((l) => l.trim()).filter(Boolean);
const results = { figures: {}, notes: [], cpu: {}, quick: QUICK, runs: RUNS, sims: NSIMS, simulator: L.SIM_KIND, walAhead: WAL_AHEAD, pgSettings: PG_SETTINGS };
const out = (s) => process.stdout.write(s + '\n');
const note = (s) => { results.notes.push(s); out(`  note: ${s}`); };

function figure(name, vals, unit, target, extra = {}) {
	const v = vals.filter((x) => x != null && Number.isFinite(x));
	const med = L.median(v);
	const min = v.length ? Math.min(...v) : null;
	const max = v.length ? Math.max(...v) : null;
	results.figures[name] = { median: med, min, max, unit, target, runs: vals, ...extra };
	out(`${name.padEnd(34)} median ${L.fmt(med).padStart(8)} min ${L.fmt(min).padStart(8)} max ${L.fmt(max).padStart(8)} ${unit.padEnd(10)} (target ${target})`);
	return med;
}

function cpuLine(what, c) {
	results.cpu[what] = c;
	const parts = Object.entries(c).map(([k, v]) => `${k} ${Math.round(v * 100)}%`);
	out(`  cpu during ${what} (100% = one core of ${require('node:os').cpus().length}): ${parts.join(', ')}`);
	for (const [k, v] of Object.entries(c)) {
		if (/^sim/.test(k) && v > 0.9) note(`${what}: simulator process ${k} used ${Math.round(v * 100)}% of a core: the simulator may be the bottleneck`);
	}
}

/* ---------------------------------------------------------------- skillgate set-up */

let sims = [];
let numberBase = 84900000000;

async function startSims(n) {
	const s = [];
	for (let i = 0; i < n; i++) s.push(await new L.Sim(`sim${i + 1}`).start({ receipts: true, rawReceipts: true }));
	return s;
}

function linksFor(ss, o = {}) {
	/* link k serves numbers 849k...; the first link is the default route */
	return ss.map((s, i) => ({ name: `s${i + 1}`, port: s.port, prefixes: `849${i}`, dflt: i === 0, rate: o.rate || 0, window: Number(process.env.BENCH_WINDOW || 100), text: o.text }));
}

function meter(daemon, ss) {
	const g = { skillgated: () => [daemon.pid], postgres: L.pgPids };
	ss.forEach((s, i) => { g[`sim${i + 1}`] = () => [s.pid]; });
	return new L.CpuMeter(g);
}

/* ---------------------------------------------------------------- MO -> reply */

async function closedLoopAll(ss, secs, warmMs, conc) {
	const per = Math.ceil(conc / ss.length);
	const rs = await Promise.all(ss.map((s, i) => {
		const base = 84900000000 + i * 1e8 + (numberBase++ % 100) * 1e6;
		return s.call('closed', { base, concurrency: per, durationMs: secs * 1000, warmupMs: warmMs, script: SCRIPT, quietMs: 30, timeoutMs: 10000 });
	}));
	return {
		rate: rs.reduce((a, r) => a + r.rate, 0), timeouts: rs.reduce((a, r) => a + r.timeouts, 0),
		nacks: rs.reduce((a, r) => a + r.nacks, 0), p50: L.median(rs.map((r) => r.p50)), p99: Math.max(...rs.map((r) => r.p99 || 0)),
	};
}

async function openLoopAll(ss, secs, rate) {
	const rs = await Promise.all(ss.map((s, i) => {
		const base = 84900000000 + i * 1e8 + (numberBase++ % 100) * 1e6;
		return s.call('open', { base, rate: rate / ss.length, durationMs: secs * 1000, script: SCRIPT, quietMs: 30, timeoutMs: 10000 });
	}));
	return rs;
}

/* Waits until every committed MO is processed and every reply left (a backlog ends a run). */
async function drain(db, what, maxMs = 180000) {
	const t0 = Date.now();
	for (;;) {
		// each count on its partial index (mo_messages_pending, mt_messages_due,
		// mt_messages_inflight): with state IN (...) it was a parallel scan of all
		// of mt_messages, 200-300 ms of both cores between runs
		const q = await db.db.query("SELECT (SELECT count(*) FROM mo_messages WHERE state = 'received')::int AS mo, ((SELECT count(*) FROM mt_messages WHERE state = 'queued' AND priority = 0) + (SELECT count(*) FROM mt_messages WHERE state = 'submitting' AND priority = 0))::int AS mt");
		const { mo, mt } = q.rows[0];
		if (!mo && !mt) {
			if (Date.now() - t0 > 2000) out(`  (${what}: backlog drained in ${L.fmt((Date.now() - t0) / 1000)} s)`);
			return;
		}
		if (Date.now() - t0 > maxMs) { note(`${what}: ${mo} MO and ${mt} replies still pending after ${maxMs / 1000} s`); return; }
		if (process.env.BENCH_DEBUG && Date.now() - t0 > 15000 && !drain.dumped) {
			drain.dumped = true;
			const st = await db.db.query("SELECT state, count(*)::int FROM mt_messages WHERE priority = 0 GROUP BY 1");
			out(`  debug: ${JSON.stringify(st.rows)}`);
			if (process.env.BENCH_HTTP) out((await (await fetch(`http://${process.env.BENCH_HTTP}/metrics`)).text()).split('\n').filter((l) => /^skillgate_(mt_pending|mo_waiting|batches|link_window_used|link_queued|link_paused|db_pending|db_conn|messages_total)/.test(l)).join('\n'));
		}
		await L.sleep(200);
	}
}

async function scenarioMo(db) {
	out(`# MO->reply: ${NSIMS} simulator process(es), closed loop of ${D.moConc} residents (script ${SCRIPT.join(' / ')}), ${D.moSecs} s after ${D.moWarm / 1000} s warm-up`);
	const conf = L.daemonConf(path.join(process.env.BENCH_DIR, 'mo.conf'), db.conninfo, linksFor(sims));
	const d = new L.Daemon(conf);
	await d.start(sims);
	const m = meter(d, sims);
	/* latency twice: on the fresh database, and right after the throughput runs
	 * (autovacuum then works through what they left: the harder case) */
	if (!LAT_ONLY) await latencyRuns(db, d, m, 'mo_reply_latency_fresh', 'on a fresh database');
	if (!LAT_ONLY) figure('mo_reply_throughput', await closedRuns(db, m, 'mo_reply_throughput', 'MO'), 'msg/s', '>= 7500, >= Kannel, aim 15000');
	await latencyRuns(db, d, m, 'mo_reply_latency', LAT_ONLY ? 'on a fresh database' : 'right after the throughput runs');
	const lost = await db.db.query("SELECT count(*)::int AS n FROM mo_messages WHERE state = 'received'");
	if (lost.rows[0].n) note(`${lost.rows[0].n} MO still 'received' after the MO runs`);
	/* what one MO costs downstream: the replies and their segments (each one a submit_sm and a receipt) */
	const w = await moCost(db);
	if (w.mo) {
		out(`  per MO: ${L.fmt(w.mt / w.mo)} replies, ${L.fmt(w.parts / w.mo)} segments (Vietnamese quiz text in UCS-2; Kannel's fixed reply is 1 segment)`);
		results.moSegments = { perMoReplies: w.mt / w.mo, perMoSegments: w.parts / w.mo };
	}
	await d.stop();
	if (!process.env.BENCH_NO_FOLD && !LAT_ONLY) await scenarioMoFold(db, w);
}

/* RUNS open-loop runs at D.latRate MO/s: figures NAME_p50, _p99, _max. */
async function latencyRuns(db, d, m, name, when) {
	out(`# MO->reply latency at a fixed offered load of ${D.latRate} MO/s, ${D.latSecs} s per run after ${D.moWarm / 1000} s of warm-up at that load, ${when}`);
	/* warm-up, not measured (as for the throughput runs): plans cached, the simulators' code compiled */
	await openLoopAll(sims, D.moWarm / 1000, D.latRate);
	await drain(db, `${name} warm-up`);
	const p50 = [], p99 = [], mx = [];
	for (let r = 0; r < RUNS; r++) {
		m.begin();
		const slow0 = d.slow;
		const rs = await openLoopAll(sims, D.latSecs, D.latRate);
		const c = m.end();
		const slow = d.slow - slow0;
		const sent = rs.reduce((a, x) => a + x.sent, 0);
		const ans = rs.reduce((a, x) => a + x.answered, 0);
		const worst = (k) => (ans ? Math.max(...rs.filter((x) => x.answered).map((x) => x[k])) : null);
		p50.push(worst('p50'));
		p99.push(worst('p99'));
		mx.push(worst('max'));
		if (ans < sent * 0.99) note(`${name} run ${r + 1}: only ${ans} of ${sent} MO answered within 10 s: the daemon does not sustain ${D.latRate} MO/s`);
		const loop = (k) => L.fmt(Math.max(...rs.map((x) => x[k] || 0)));
		out(`  run ${r + 1}: offered ${Math.round(rs.reduce((a, x) => a + x.offered, 0))} MO/s, ${ans}/${sent} answered, p50 ${L.fmt(p50[r])} p99 ${L.fmt(p99[r])} max ${L.fmt(mx[r])} ms (simulator event-loop delay p99 ${loop('loopP99')} max ${loop('loopMax')} ms; daemon statements of 80 ms or more: ${slow})`);
		if (r === 0) cpuLine(name, c);
		await drain(db, `${name} run ${r + 1}`);
	}
	figure(`${name}_p50`, p50, 'ms', '(Kannel ~60 ms)');
	figure(`${name}_p99`, p99, 'ms', '<= 20 at 1000/s');
	figure(`${name}_max`, mx, 'ms', '(none)');
}

/* MO ids drawn so far (one per MO stored; cheap at any table size). */
async function moSeq(db) {
	return Number((await db.db.query('SELECT last_value FROM mo_messages_id_seq')).rows[0].last_value);
}

/*
 * RUNS closed-loop runs of the residents' script: MO/s answered per run. Also the CPU each
 * process spent per MO over the metered window (warm-up and tail included, MOs counted by
 * the ids drawn; figures <name>_cpu_per_mo_postgres / _skillgated). Within one bench it is
 * steadier than the throughput; between benches it moves with the host too (README).
 */
async function closedRuns(db, m, name, label) {
	const thr = [], pg = [], sg = [];
	for (let r = 0; r < RUNS; r++) {
		const id0 = await moSeq(db);
		const t0 = process.hrtime.bigint();
		m.begin();
		const x = await closedLoopAll(sims, D.moSecs, D.moWarm, D.moConc);
		const c = m.end();
		const secs = Number(process.hrtime.bigint() - t0) / 1e9;
		const mos = (await moSeq(db)) - id0;
		thr.push(x.rate);
		const us = (k) => (mos > 0 ? (c[k] * secs * 1e6) / mos : null);
		pg.push(us('postgres'));
		sg.push(us('skillgated'));
		out(`  run ${r + 1}: ${Math.round(x.rate)} MO/s answered (p50 ${L.fmt(x.p50)} ms, p99 ${L.fmt(x.p99)} ms under saturation), ${x.timeouts} unanswered, ${x.nacks} deliver_sm_resp errors; CPU per MO: postgres ${L.fmt(pg[r])} us, skillgated ${L.fmt(sg[r])} us`);
		if (r === 0) cpuLine(name, c);
		await drain(db, `${label} run ${r + 1}`);
	}
	figure(`${name}_cpu_per_mo_postgres`, pg, 'us', '(per-MO cost; see README, Benchmarks)');
	figure(`${name}_cpu_per_mo_skillgated`, sg, 'us', '(per-MO cost; see README, Benchmarks)');
	return thr;
}

async function moCost(db) {
	return (await db.db.query('SELECT (SELECT count(*) FROM mo_messages)::float AS mo, (SELECT count(*) FROM mt_messages)::float AS mt, (SELECT coalesce(sum(nparts), 0) FROM mt_messages)::float AS parts')).rows[0];
}

/* The same throughput runs with text = fold on the links: replies folded to GSM-7, one segment
 * for most, as Kannel's fixed reply (what a deployment choosing unaccented SMS gets). */
async function scenarioMoFold(db, before) {
	out('# MO->reply with text = fold (Vietnamese folded to GSM-7: reply sizes like Kannel\'s), same closed loop');
	const conf = L.daemonConf(path.join(process.env.BENCH_DIR, 'mofold.conf'), db.conninfo, linksFor(sims, { text: 'fold' }));
	const d = new L.Daemon(conf);
	await d.start(sims);
	const thr = await closedRuns(db, meter(d, sims), 'mo_reply_throughput_fold', 'MO fold');
	const w = await moCost(db);
	const mo = w.mo - before.mo;
	if (mo > 0) {
		out(`  per MO: ${L.fmt((w.mt - before.mt) / mo)} replies, ${L.fmt((w.parts - before.parts) / mo)} segments`);
		results.moFoldSegments = { perMoReplies: (w.mt - before.mt) / mo, perMoSegments: (w.parts - before.parts) / mo };
	}
	figure('mo_reply_throughput_fold', thr, 'msg/s', '>= 7500 (reply text folded to GSM-7)');
	await d.stop();
}

/* ---------------------------------------------------------------- broadcast MT */

async function waitCount(ss, field, target, timeoutMs, onFirst, stallMs = Infinity) {
	const t0 = Date.now();
	let first = null;
	let last = -1, lastAt = t0;
	for (;;) {
		const cs = await Promise.all(ss.map((s) => s.call('counters')));
		const n = cs.reduce((a, c) => a + c.counters[field], 0);
		if (first == null && n > 0) { first = process.hrtime.bigint(); if (onFirst) onFirst(); }
		if (n >= target) return { n, t: process.hrtime.bigint(), first };
		if (n !== last) { last = n; lastAt = Date.now(); }
		if (Date.now() - t0 > timeoutMs || Date.now() - lastAt > stallMs) return { n, t: process.hrtime.bigint(), first, timedOut: true };
		await L.sleep(20);
	}
}

async function baseCounters(ss, field) {
	const cs = await Promise.all(ss.map((s) => s.call('counters')));
	return cs.reduce((a, c) => a + c.counters[field], 0);
}

const MT_TEXT = 'Nhac nho: nhan HOC 1 gui 8079 de kiem tra 5 ky nang so co ban. Mien phi. Tu choi: TUCHOI';

async function scenarioMt(db) {
	out(`# Broadcast MT: ${D.mtCount} queued bulk MTs inserted in one transaction, ${NSIMS} link(s), window ${process.env.BENCH_WINDOW || 100}, rate 0, receipts on`);
	const conf = L.daemonConf(path.join(process.env.BENCH_DIR, 'mt.conf'), db.conninfo, linksFor(sims));
	const d = new L.Daemon(conf);
	await d.start(sims);
	const m = meter(d, sims);
	const sub = [], tracked = [];
	for (let r = 0; r < RUNS; r++) {
		const base = await baseCounters(sims, 'accepted');
		const mark = await db.db.query('SELECT coalesce(max(id), 0)::bigint AS id FROM mt_messages');
		const ins = process.hrtime.bigint();
		await db.db.query(`INSERT INTO mt_messages (msisdn, text, kind, priority, state)
			SELECT '849' || (g % ${NSIMS}) || lpad(g::text, 7, '0'), $1, 'broadcast', 1, 'queued'
			  FROM generate_series(1, ${D.mtCount}) g`, [MT_TEXT]);
		const t0 = process.hrtime.bigint();
		m.begin();
		const w = await waitCount(sims, 'accepted', base + D.mtCount, 300000);
		const c = m.end();
		const subSecs = Number(w.t - t0) / 1e9;
		/* status tracking: every message 'delivered' in the database (receipts applied) */
		let done;
		for (;;) {
			const q = await db.db.query("SELECT count(*) FILTER (WHERE state = 'delivered')::int AS d, count(*) FILTER (WHERE state IN ('queued','submitting','submitted'))::int AS p FROM mt_messages WHERE id > $1", [mark.rows[0].id]);
			done = q.rows[0];
			if (done.p === 0 || Number(process.hrtime.bigint() - t0) / 1e9 > 300) break;
			await L.sleep(50);
		}
		const trSecs = Number(process.hrtime.bigint() - t0) / 1e9;
		sub.push((w.n - base) / subSecs);
		tracked.push(done.d / trSecs);
		out(`  run ${r + 1}: insert ${L.fmt(Number(t0 - ins) / 1e9)} s; ${w.n - base} submitted in ${L.fmt(subSecs)} s; ${done.d} delivered (receipts applied) after ${L.fmt(trSecs)} s${w.timedOut ? ' (TIMED OUT)' : ''}`);
		if (r === 0) cpuLine('mt_broadcast', c);
	}
	figure('mt_broadcast_submit', sub, 'segments/s', '>= 10000');
	figure('mt_broadcast_tracked', tracked, 'msg/s', '(all receipts applied)');
	await d.stop();
}

async function scenarioRate(db) {
	out(`# Link rate accuracy: one link, rate = ${D.rate}/s, measured over ${D.rateSecs} s after 2 s`);
	const s1 = sims.slice(0, 1);
	const links = linksFor(s1, { rate: D.rate });
	links[0].prefixes = '';
	const conf = L.daemonConf(path.join(process.env.BENCH_DIR, 'rate.conf'), db.conninfo, links);
	const d = new L.Daemon(conf);
	await d.start(s1);
	const need = D.rate * (D.rateSecs + 10);
	await db.db.query(`INSERT INTO mt_messages (msisdn, text, kind, priority, state)
		SELECT '8488' || lpad(g::text, 7, '0'), $1, 'broadcast', 1, 'queued' FROM generate_series(1, ${need}) g`, [MT_TEXT]);
	await waitCount(s1, 'accepted', 1, 10000);
	await L.sleep(2000);
	const windows = [];
	const a0 = await baseCounters(s1, 'accepted');
	const t0 = process.hrtime.bigint();
	let prev = a0, tp = t0;
	const step = 5000;
	for (let k = 0; k < D.rateSecs * 1000 / step; k++) {
		await L.sleep(step - Number(process.hrtime.bigint() - t0) / 1e6 % step);
		const a = await baseCounters(s1, 'accepted');
		const t = process.hrtime.bigint();
		windows.push((a - prev) / (Number(t - tp) / 1e9));
		prev = a; tp = t;
	}
	const total = (prev - a0) / (Number(tp - t0) / 1e9);
	const err = (total / D.rate - 1) * 100;
	out(`  achieved ${L.fmt(total)}/s over ${L.fmt(Number(tp - t0) / 1e9)} s; 5-s windows ${windows.map((x) => Math.round(x)).join(' ')}`);
	figure('mt_rate_error', [err], '%', `within +-2 % of ${D.rate}/s over a minute`, { windows: windows.map((x) => (x / D.rate - 1) * 100) });
	figure('mt_rate_error_5s_windows', windows.map((x) => (x / D.rate - 1) * 100), '%', '(spread, no target)');
	await d.stop();
	await db.db.query("UPDATE mt_messages SET state = 'cancelled' WHERE state IN ('queued', 'submitting')");
}

/* ---------------------------------------------------------------- sessions */

async function scenarioSessions(db) {
	out(`# Sessions: RSS of skillgated with ${D.sessions} numbers mid-quiz (flow state lives in PostgreSQL)`);
	const conf = L.daemonConf(path.join(process.env.BENCH_DIR, 'sess.conf'), db.conninfo, linksFor(sims));
	const d = new L.Daemon(conf);
	await d.start(sims);
	await L.sleep(500);
	const before = L.rssKiB(d.pid);
	const per = Math.ceil(D.sessions / sims.length);
	const t0 = Date.now();
	/* closed loop of 'HOC 1' from fresh numbers until `per` numbers per link have their question */
	const rs = await Promise.all(sims.map((s, i) => s.call('closed', {
		base: 84900000000 + i * 1e8 + 90e6, concurrency: 2000, durationMs: 1e9, warmupMs: 0, script: ['HOC 1'],
		quietMs: 30, timeoutMs: 10000, total: per,
	})));
	const secs = (Date.now() - t0) / 1000;
	await drain(db, 'sessions');
	const after = L.rssKiB(d.pid);
	const q = await db.db.query("SELECT count(*)::int AS n FROM subscribers WHERE flow_state <> ''");
	out(`  ${rs.reduce((a, r) => a + r.started, 0)} numbers sent HOC 1 in ${L.fmt(secs)} s; ${q.rows[0].n} subscribers with a flow in progress; RSS ${L.fmt(before.rss / 1024)} MiB before, ${L.fmt(after.rss / 1024)} MiB after, peak ${L.fmt(after.hwm / 1024)} MiB`);
	figure('sms_sessions_rss', [after.rss / 1024], 'MiB', `<= 64 with ${D.sessions} sessions`, { peak: after.hwm / 1024, before: before.rss / 1024, inProgress: q.rows[0].n });
	figure('sms_sessions_rss_peak', [after.hwm / 1024], 'MiB', '<= 64');
	await d.stop();
	await ussdSessions(db);
}

/* One POST /ussd: resolves to the response body ('CON ...' / 'END ...'). */
function ussdPost(agent, port, token, form) {
	const body = new URLSearchParams(form).toString();
	return new Promise((resolve, reject) => {
		const req = http.request({ host: '127.0.0.1', port, path: '/ussd', method: 'POST', agent, headers: {
			'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body),
			authorization: `Bearer ${token}` } }, (res) => {
			let b = '';
			res.on('data', (x) => { b += x; });
			res.on('end', () => (res.statusCode === 200 ? resolve(b) : reject(new Error(`HTTP ${res.statusCode}: ${b}`))));
		});
		req.on('error', reject);
		req.end(body);
	});
}

/* D.sessions USSD dialogs opened over POST /ussd (the main menu shown, each left open), then RSS. */
async function ussdSessions(db) {
	out(`# Sessions: RSS of skillgated with ${D.sessions} USSD dialogs open (dialled, main menu shown, not ended)`);
	const port = await L.freePort();
	const file = path.join(process.env.BENCH_DIR, 'ussd.conf');
	L.daemonConf(file, db.conninfo, linksFor(sims), { content: { ussd_idle_timeout: 3600, ussd_total_timeout: 3600 } });
	fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(/^listen = .*$/m, `listen = 127.0.0.1:${port}`), { mode: 0o600 });
	const tok = await L.run(path.join(L.BIN, 'skillctl'), ['-c', file, 'token', 'create', '--role', 'partner', '--name', `bench-${Date.now()}`]);
	const token = tok.stdout.trim().split('\n').pop();
	if (tok.code !== 0 || !token) { note(`ussd sessions: no partner token (${tok.stderr.trim()})`); return; }
	const d = new L.Daemon(file);
	await d.start(sims);
	await L.sleep(500);
	const before = L.rssKiB(d.pid);
	const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
	const t0 = Date.now();
	let next = 0, ok = 0, bad = 0;
	await Promise.all(Array.from({ length: 128 }, async () => {
		for (let i = next++; i < D.sessions; i = next++) {
			try {
				const r = await ussdPost(agent, port, token, { sessionId: `bs${i}`, serviceCode: '*8079#', phoneNumber: String(84970000000 + i), networkCode: '45204', text: '' });
				if (r.startsWith('CON')) ok++; else bad++;
			} catch (e) { bad++; }
		}
	}));
	agent.destroy();
	const secs = (Date.now() - t0) / 1000;
	await L.sleep(1000);
	const after = L.rssKiB(d.pid);
	const open = await db.db.query('SELECT count(*)::int AS n FROM ussd_sessions WHERE ended_at IS NULL');
	out(`  ${ok} dialogs opened in ${L.fmt(secs)} s (${Math.round(ok / secs)}/s), ${bad} failed; ${open.rows[0].n} open in the database; RSS ${L.fmt(before.rss / 1024)} MiB before, ${L.fmt(after.rss / 1024)} MiB after, peak ${L.fmt(after.hwm / 1024)} MiB`);
	if (bad) note(`ussd sessions: ${bad} dialogs did not open`);
	figure('ussd_sessions_rss', [after.rss / 1024], 'MiB', `<= 64 with ${D.sessions} sessions`, { peak: after.hwm / 1024, before: before.rss / 1024, open: open.rows[0].n, opened: ok });
	figure('ussd_sessions_rss_peak', [after.hwm / 1024], 'MiB', '<= 64');
	await d.stop();
}

/* ---------------------------------------------------------------- reports */

async function scenarioReports() {
	const db = await L.createDb('bench_reports');
	out(`# Reports: coverage over ${D.phones} phones in ${D.households} households (generated with SQL across the communes of sql/002)`);
	const t0 = Date.now();
	/* generated data is consistent by construction: skip the FK triggers while loading */
	await db.db.query("SET session_replication_role = replica");
	await db.db.query(`INSERT INTO households (code, commune_code, village)
		SELECT 'H' || g, c.codes[1 + g % array_length(c.codes, 1)], 'Thon ' || (g % 20)
		  FROM generate_series(1, ${D.households}) g,
		       (SELECT array_agg(code ORDER BY code) AS codes FROM localities WHERE level = 'commune') c`);
	await db.db.query(`INSERT INTO subscribers (msisdn, household_id, joined_via)
		SELECT (84900000000 + g)::text, 1 + (hashint4(g) & 2147483647) % ${D.households}, 'import'
		  FROM generate_series(1, ${D.phones}) g`.replace('hashint4(g)', 'hashint4(g)'));
	/* proficiency: each phone x skill with probability ~45 %, proficient with ~70 % of those */
	await db.db.query(`INSERT INTO proficiency (msisdn, skill, self_level, self_at, self_source, best_quiz, quiz_passed_at, quiz_source, proficient)
		SELECT s.msisdn, k.code, 2, now(), 'sms', 5, now(), 'sms', (hashint8(s.id * 7 + k.n) & 1023) < 717
		  FROM (SELECT (84900000000 + g)::text AS msisdn, g::bigint AS id FROM generate_series(1, ${D.phones}) g) s
		  CROSS JOIN (SELECT code, row_number() OVER (ORDER BY code) AS n FROM skills) k
		 WHERE (hashint8(s.id * 13 + k.n * 101) & 1023) < 461`);
	await db.db.query('SET session_replication_role = DEFAULT');
	/* the per-household coverage rows the triggers keep (skipped above), built the way
	 * sql/005_reports.sql builds them for existing data */
	await db.db.query(`INSERT INTO coverage_households (household_id, mask, covered)
		SELECT m.household_id, bit_or(m.mask), bool_or(m.mask = 31)
		  FROM (SELECT s.household_id, bit_or(sg_skill_bit(p.skill)) AS mask
		          FROM subscribers s JOIN proficiency p ON p.msisdn = s.msisdn AND p.proficient
		         WHERE s.household_id IS NOT NULL GROUP BY s.household_id, s.msisdn) m
		 GROUP BY m.household_id`);
	await db.db.query('VACUUM ANALYZE households, subscribers, proficiency, coverage_households');
	const gen = (Date.now() - t0) / 1000;
	const cnt = await db.db.query('SELECT (SELECT count(*) FROM subscribers)::int AS phones, (SELECT count(*) FROM households)::int AS hh, (SELECT count(*) FROM proficiency)::int AS prof, (SELECT count(*) FROM proficiency WHERE proficient)::int AS profok, (SELECT count(*) FROM coverage_households WHERE covered)::int AS hh_covered');
	out(`  generated in ${L.fmt(gen)} s: ${JSON.stringify(cnt.rows[0])}`);
	const fn = await db.db.query("SELECT 1 FROM pg_proc WHERE proname = 'sg_coverage'");
	const q = fn.rowCount ? "SELECT * FROM sg_coverage($1)" : null;
	if (!q) note('sg_coverage is missing: timing an equivalent aggregate');
	for (const level of ['province', 'commune']) {
		const ts = [];
		let rows = 0, covered = null;
		for (let r = 0; r < RUNS; r++) {
			const a = process.hrtime.bigint();
			const res = await db.db.query(q, [level]);
			ts.push(Number(process.hrtime.bigint() - a) / 1e9);
			rows = res.rowCount;
			covered = res.rows.reduce((x, y) => x + Number(y.covered), 0);
		}
		out(`  sg_coverage('${level}'): ${rows} rows, ${covered} households covered`);
		figure(`coverage_report_${level}`, ts, 's', '<= 1');
	}
	await db.db.end();
	await L.adminQuery('DROP DATABASE bench_reports WITH (FORCE)');
}

/* ---------------------------------------------------------------- main */

async function gitSha() {
	const r = await L.run('git', ['rev-parse', '--short', 'HEAD']);
	const dirty = await L.run('git', ['status', '--porcelain', '--untracked-files=no']);
	return (r.stdout.trim() || 'nogit') + (dirty.stdout.trim() ? '-dirty' : '');
}

async function main() {
	const started = new Date();
	const sha = await gitSha(); /* the commit measured: read before the runs, not after */
	out(`skillgate bench ${QUICK ? '(BENCH_QUICK) ' : ''}— ${RUNS} run(s) per figure, ${require('node:os').cpus().length} cores, ${NSIMS} simulator process(es) (${L.SIM_KIND === 'c' ? 'build/bench/smscsim' : 'simproc.js, Node'}), PostgreSQL synchronous_commit=on fsync=on ${PG_SETTINGS.join(' ').replace(/ = /g, '=')}, ${WAL_AHEAD ? `${WAL_AHEAD} WAL segments (${WAL_AHEAD * 16} MB) in place` : 'no WAL segment in place (a new cluster: each one is created as commits wait)'}`);
	out(`bench config: dedupe_window = 0 (residents answer "A" twice within seconds), link window ${process.env.BENCH_WINDOW || 100}, rate 0 unless stated, no quiet hours, no daily cap, log_level info`);
	const vm = (k) => { try { return require('node:fs').readFileSync(`/proc/sys/vm/${k}`, 'utf8').trim(); } catch { return '?'; } };
	out(`host writeback: vm.dirty_background_ratio ${vm('dirty_background_ratio')}, dirty_background_bytes ${vm('dirty_background_bytes')}, dirty_expire_centisecs ${vm('dirty_expire_centisecs')} (see README, Benchmarks: stalls after the throughput runs)`);
	sims = await startSims(NSIMS);
	try {
		const db = await L.createDb('bench_sg');
		if (ONLY.includes('mo')) await scenarioMo(db);
		if (ONLY.includes('kannel') && !NO_KANNEL) await kannel.scenario({ sims, D, RUNS, SCRIPT, figure, out, note, cpuLine, results, closedLoopAll, waitCount, baseCounters });
		if (ONLY.includes('mt')) await scenarioMt(db);
		if (ONLY.includes('rate')) await scenarioRate(db);
		if (ONLY.includes('sessions')) await scenarioSessions(db);
		await db.db.end();
		if (ONLY.includes('reports')) await scenarioReports();
	} finally {
		for (const s of sims) await s.stop();
	}
	/* ratios */
	const F = results.figures;
	out('# skillgate / Kannel (same simulator, same run)');
	const ratio = (name, a, b, target) => {
		const v = F[a] && F[b] && F[a].median && F[b].median ? F[a].median / F[b].median : null;
		results.figures[name] = { median: v, unit: 'x', target };
		out(`${name.padEnd(34)} ${v == null ? 'n/a' : v.toFixed(2) + 'x'}  (target ${target})`);
	};
	ratio('ratio_mo_reply_vs_kannel', 'mo_reply_throughput', 'kannel_mo_reply_throughput', '>= 1.0, aim 2.0');
	ratio('ratio_mo_reply_fold_vs_kannel', 'mo_reply_throughput_fold', 'kannel_mo_reply_throughput', '>= 1.0 (replies of similar size)');
	ratio('ratio_mt_vs_kannel', 'mt_broadcast_submit', 'kannel_mt_throughput', '>= 1.0');
	/* the MO ratio compares MOs; Kannel's fixed reply is one GSM-7 segment, a quiz reply is several */
	const seg = results.moSegments && results.moSegments.perMoSegments;
	const km = F.kannel_mo_reply_throughput && F.kannel_mo_reply_throughput.median;
	if (seg && km && F.mo_reply_throughput && F.mo_reply_throughput.median) {
		const v = (F.mo_reply_throughput.median * seg) / km;
		results.figures.ratio_mo_reply_segments_vs_kannel = { median: v, unit: 'x', target: '(information)' };
		out(`${'ratio_mo_reply_segments_vs_kannel'.padEnd(34)} ${v.toFixed(2)}x  (reply segments/s: ${L.fmt(seg)} per MO here, 1 per MO for Kannel)`);
	}
	results.sha = sha;
	results.started = started.toISOString();
	results.seconds = (Date.now() - started.getTime()) / 1000;
	const dir = path.join(L.ROOT, 'bench/results');
	fs.mkdirSync(dir, { recursive: true });
	const file = path.join(dir, `${started.toISOString().replace(/[:.]/g, '-')}-${sha}.json`);
	fs.writeFileSync(file, JSON.stringify(results, null, 1) + '\n');
	out(`results: ${path.relative(L.ROOT, file)} (${L.fmt(results.seconds)} s)`);
}

main().then(() => process.exit(0), async (e) => {
	process.stderr.write(`bench: ${e.stack || e.message}\n`);
	for (const s of sims) await s.stop().catch(() => {});
	process.exit(1);
});
