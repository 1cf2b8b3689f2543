'use strict';
/*
 * kannel.js — the Kannel reference of `make bench`: bearerbox + smsbox (Debian `kannel`) against
 * the same simulator processes, configs from tests/bench/kannel/*.conf.in. MO->reply uses the same
 * closed loop as skillgate (a fixed-reply sms-service answers every MO); MT posts sendsms requests
 * of 100 recipients each (Kannel splits `to` on spaces) and counts submit_sm at the simulators.
 * Kannel runs with no store (§7 quotes its no-store figures); skillgate commits every message.
 */
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const L = require('./lib');

function which(cmd) {
	for (const d of (process.env.PATH || '').split(':').concat(['/usr/sbin', '/usr/bin'])) {
		const f = path.join(d, cmd);
		try { fs.accessSync(f, fs.constants.X_OK); return f; } catch { /* next */ }
	}
	return null;
}

async function startKannel(sims) {
	const dir = path.join(process.env.BENCH_DIR, 'kannel');
	fs.mkdirSync(dir, { recursive: true });
	const ports = { ADMIN_PORT: await L.freePort(), SMSBOX_PORT: await L.freePort(), SENDSMS_PORT: await L.freePort() };
	const smscT = fs.readFileSync(path.join(__dirname, 'kannel/smsc.conf.in'), 'utf8');
	const groups = sims.map((s, i) => smscT.replace(/@ID@/g, `sim${i + 1}`).replace(/@PORT@/g, String(s.port)).replace(/@PREFIX@/g, `849${i}`)).join('\n');
	let conf = fs.readFileSync(path.join(__dirname, 'kannel/kannel.conf.in'), 'utf8')
		.replace(/@SMSC_GROUPS@/, groups).replace(/@DIR@/g, dir);
	for (const [k, v] of Object.entries(ports)) conf = conf.replace(new RegExp(`@${k}@`, 'g'), String(v));
	const file = path.join(dir, 'kannel.conf');
	fs.writeFileSync(file, conf);
	const procs = [];
	const bb = L.track(spawn(which('bearerbox'), ['-v', '2', file], { stdio: ['ignore', 'ignore', 'ignore'] }));
	procs.push(bb);
	await L.sleep(500);
	const sb = L.track(spawn(which('smsbox'), ['-v', '2', file], { stdio: ['ignore', 'ignore', 'ignore'] }));
	procs.push(sb);
	for (const s of sims) {
		const r = await s.call('bound', { n: 1, ms: 20000 });
		if (r.bound < 1) throw new Error(`Kannel did not bind:\n${fs.readFileSync(path.join(dir, 'bearerbox.log'), 'utf8').slice(-3000)}`);
	}
	/* smsbox connected and sendsms listening */
	const t = Date.now();
	for (;;) {
		const ok = await new Promise((res) => {
			http.get(`http://127.0.0.1:${ports.SENDSMS_PORT}/`, (r) => { r.resume(); res(true); }).on('error', () => res(false));
		});
		if (ok) break;
		if (Date.now() - t > 20000) throw new Error('smsbox sendsms port did not open');
		await L.sleep(100);
	}
	await L.sleep(1000);
	return {
		bb, sb, ports, dir,
		async stop() {
			for (const p of [sb, bb]) {
				if (p.exitCode !== null) continue;
				const e = new Promise((r) => p.once('exit', r));
				p.kill('SIGTERM');
				const k = setTimeout(() => p.kill('SIGKILL'), 8000);
				await e;
				clearTimeout(k);
			}
		},
	};
}

function sendsms(agent, port, to, text) {
	const q = `username=bench&password=bench&from=8079&dlr-mask=3&to=${encodeURIComponent(to.join(' '))}&text=${encodeURIComponent(text)}`;
	return new Promise((resolve) => {
		const req = http.get({ host: '127.0.0.1', port, path: `/cgi-bin/sendsms?${q}`, agent }, (r) => {
			let b = '';
			r.on('data', (c) => { b += c; });
			r.on('end', () => resolve({ status: r.statusCode, body: b }));
		});
		req.on('error', (e) => resolve({ status: 0, body: e.message }));
	});
}

/*
 * Waits until Kannel has nothing left to send: no submit_sm reached the simulators for 2 s
 * (waitCount's stall, with no count to reach). MOs it took faster than it answers could queue
 * up in bearerbox and be sent after the run, and the next run would pay for them. In the runs
 * seen so far none were left after the MO runs; a timed-out MT run leaves its rest.
 */
async function settle(ctx, sims, what, maxMs = 180000) {
	const t0 = Date.now();
	await ctx.waitCount(sims, 'submits', Infinity, maxMs, null, 2000);
	const s = (Date.now() - t0) / 1000;
	if (s >= maxMs / 1000) ctx.note(`${what}: Kannel still sending after ${maxMs / 1000} s`);
	else if (s > 3) ctx.out(`  (${what}: Kannel's backlog sent in ${L.fmt(s - 2)} s)`);
}

/* bearerbox's own account of its queues and DLR storage (admin status page), for the log. */
async function kannelStatus(k) {
	try {
		const b = await (await fetch(`http://127.0.0.1:${k.ports.ADMIN_PORT}/status.txt?password=bench`)).text();
		return b.split('\n').map((l) => l.trim()).filter((l) => /^(SMS|DLR):/.test(l)).join('; ');
	} catch (e) {
		return `status page: ${e.message}`;
	}
}

async function scenario(ctx) {
	const { D, RUNS, figure, out, note, cpuLine } = ctx;
	/* one bind on one simulator process: with two smsc groups bearerbox answered only one of them */
	const sims = ctx.sims.slice(0, 1);
	if (!which('bearerbox') || !which('smsbox')) {
		note('Kannel is not installed (apt-get install kannel): no reference figures');
		return;
	}
	out(`# Kannel reference (bearerbox + smsbox ${D.kannelVersion || ''}, no store, ${sims.length} of the same simulator processes, fixed-reply sms-service)`);
	const k = await startKannel(sims);
	try {
		const g = { bearerbox: () => [k.bb.pid], smsbox: () => [k.sb.pid] };
		sims.forEach((s, i) => { g[`sim${i + 1}`] = () => [s.pid]; });
		const m = new L.CpuMeter(g);
		const thr = [];
		for (let r = 0; r < RUNS; r++) {
			m.begin();
			const x = await ctx.closedLoopAll(sims, D.moSecs, D.moWarm, D.moConc);
			const c = m.end();
			thr.push(x.rate);
			out(`  kannel run ${r + 1}: ${Math.round(x.rate)} MO/s answered (p50 ${L.fmt(x.p50)} ms, p99 ${L.fmt(x.p99)} ms under saturation), ${x.timeouts} unanswered`);
			if (r === 0) cpuLine('kannel_mo_reply', c);
			await settle(ctx, sims, `kannel run ${r + 1}`);
		}
		figure('kannel_mo_reply_throughput', thr, 'msg/s', '(reference; §7 quotes ~7500 with no store)');
		out(`  (bearerbox after the MO runs: ${await kannelStatus(k)})`);
		const mt = [];
		const text = 'Nhac nho: nhan HOC 1 gui 8079 de kiem tra 5 ky nang so co ban. Mien phi. Tu choi: TUCHOI';
		const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
		let num = 0;
		for (let r = 0; r < RUNS; r++) {
			const base = await ctx.baseCounters(sims, 'accepted');
			const reqs = [];
			for (let i = 0; i < D.kannelMt; i += 100) {
				const to = [];
				for (let j = 0; j < 100 && i + j < D.kannelMt; j++, num++) to.push(`849${num % sims.length}8${String(num).padStart(6, '0')}`);
				reqs.push(to);
			}
			m.begin();
			const t0 = process.hrtime.bigint();
			let bad = 0;
			let next = 0;
			await Promise.all(Array.from({ length: 8 }, async () => {
				while (next < reqs.length) {
					const to = reqs[next++];
					const res = await sendsms(agent, k.ports.SENDSMS_PORT, to, text);
					if (res.status !== 202 && res.status !== 200) bad++;
				}
			}));
			/* given up after 30 s without progress: Kannel stalls now and then (bearerbox busy, nothing sent) */
			const w = await ctx.waitCount(sims, 'accepted', base + D.kannelMt, 300000, null, 30000);
			const c = m.end();
			const secs = Number(w.t - t0) / 1e9;
			/* a run that timed out (Kannel stalls now and then) says nothing about its throughput */
			if (!w.timedOut) mt.push((w.n - base) / secs);
			out(`  kannel run ${r + 1}: ${w.n - base} submitted in ${L.fmt(secs)} s (${reqs.length} sendsms requests of 100, ${bad} refused)${w.timedOut ? ' (TIMED OUT)' : ''}`);
			if (r === 0) cpuLine('kannel_mt', c);
			if (w.timedOut && r + 1 < RUNS) await settle(ctx, sims, `kannel MT run ${r + 1}`);
		}
		agent.destroy();
		out(`  (bearerbox after the MT runs: ${await kannelStatus(k)})`);
		if (mt.length < RUNS) note(`kannel_mt_throughput: ${RUNS - mt.length} run(s) timed out and are left out`);
		figure('kannel_mt_throughput', mt, 'segments/s', '(reference; §7 quotes ~10000 with no store)');
	} finally {
		await k.stop();
	}
}

module.exports = { scenario, startKannel };
