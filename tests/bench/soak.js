'use strict';
/*
 * soak.js — RSS of skillgated over a long run at moderate load (tests/bench/soak.sh, `make soak`).
 * Offers SOAK_RATE MO/s (residents taking quizzes, fresh numbers) and a trickle of broadcast MTs,
 * samples VmRSS every 10 s, and calls RSS flat when the mean of the last sixth of the samples is
 * within 5 % (or 2 MiB) of the mean of the samples between minutes 5 and 10 (short runs: the second
 * sixth), i.e. after warm-up.
 */
const fs = require('node:fs');
const path = require('node:path');
const L = require('./lib');

const SECS = Number(process.env.SOAK_SECS || 3600);
const RATE = Number(process.env.SOAK_RATE || 200);
const SCRIPT = ['HOC 1', 'A', 'B', 'C', 'D', 'A'];
const out = (s) => process.stdout.write(s + '\n');

async function main() {
	/* the commit measured: read before the hour, not after */
	const sha = (await L.run('git', ['rev-parse', '--short', 'HEAD'])).stdout.trim() || 'nogit';
	const sim = await new L.Sim('sim1').start({ receipts: true });
	let d;
	try {
		const db = await L.createDb('soak');
		const conf = L.daemonConf(path.join(process.env.BENCH_DIR, 'soak.conf'), db.conninfo,
			[{ name: 's1', port: sim.port, prefixes: '', dflt: true, rate: 0, window: 100 }]);
		d = new L.Daemon(conf);
		await d.start([sim]);
		out(`soak: ${SECS} s at ${RATE} MO/s + ${RATE / 2} broadcast MT/s, RSS every 10 s (pid ${d.pid})`);
		const samples = [];
		const t0 = Date.now();
		let stop = false;
		const sampler = (async () => {
			while (!stop) {
				const r = L.rssKiB(d.pid);
				samples.push({ t: Math.round((Date.now() - t0) / 1000), rss: r.rss });
				if (samples.length % 30 === 1) out(`  t=${samples[samples.length - 1].t}s rss ${L.fmt(r.rss / 1024)} MiB`);
				await L.sleep(10000);
			}
		})();
		const mt = (async () => {
			let n = 0;
			while (!stop) {
				await db.db.query(`INSERT INTO mt_messages (msisdn, text, kind, priority, state)
					SELECT (84880000000 + ${n} + g)::text, 'Soak broadcast: nhan HOC 1 gui 8079', 'broadcast', 1, 'queued'
					  FROM generate_series(1, ${Math.max(1, Math.round(RATE / 2))}) g`);
				n += Math.round(RATE / 2);
				await L.sleep(1000);
			}
		})();
		let base = 84900000000;
		let answered = 0, sent = 0;
		while (Date.now() - t0 < SECS * 1000) {
			const chunk = Math.min(60000, SECS * 1000 - (Date.now() - t0));
			const r = await sim.call('open', { base, rate: RATE, durationMs: chunk, script: SCRIPT, quietMs: 30, timeoutMs: 10000 });
			base += 1e6;
			sent += r.sent;
			answered += r.answered;
		}
		stop = true;
		await sampler;
		await mt;
		const rss = samples.map((s) => s.rss);
		const k = Math.max(1, Math.floor(rss.length / 6));
		const warmIdx = SECS >= 900 ? [30, 60] : [k, 2 * k];
		const mean = (a) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
		const early = mean(rss.slice(warmIdx[0], warmIdx[1]));
		const late = mean(rss.slice(-k));
		const growth = late - early;
		const flat = growth <= Math.max(2048, early * 0.05);
		out(`soak: ${sent} MO offered, ${answered} answered; RSS min ${L.fmt(Math.min(...rss) / 1024)} max ${L.fmt(Math.max(...rss) / 1024)} MiB; after warm-up ${L.fmt(early / 1024)} MiB, at the end ${L.fmt(late / 1024)} MiB`);
		out(`soak_rss_growth                    ${L.fmt(growth / 1024)} MiB  (target: flat) -> rss ${flat ? 'flat' : 'NOT flat'}`);
		const dir = path.join(L.ROOT, 'bench/results');
		fs.mkdirSync(dir, { recursive: true });
		const file = path.join(dir, `soak-${new Date(t0).toISOString().replace(/[:.]/g, '-')}-${sha}.json`);
		fs.writeFileSync(file, JSON.stringify({ secs: SECS, rate: RATE, sent, answered, flat, growthKiB: growth, samples }, null, 1) + '\n');
		out(`results: ${path.relative(L.ROOT, file)}`);
		await d.stop();
		await db.db.end();
	} finally {
		if (d) await d.stop().catch(() => {});
		await sim.stop();
	}
}

main().then(() => process.exit(0), (e) => { process.stderr.write(`soak: ${e.stack || e.message}\n`); process.exit(1); });
