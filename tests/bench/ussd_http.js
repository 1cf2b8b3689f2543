#!/usr/bin/env node
'use strict';
/*
 * ussd_http.js — latency of POST /ussd under a burst (issue #7: "answer within
 * 1 s even under load"). Fires N simultaneous USSD dialogs of K steps each at
 * the HTTP callback of a running skillgated and prints one line:
 *
 *   ussd_http N=500 K=2 steps=1000 ok=1000 err=0 p50=... p99=... max=... ms steps/s=... wall=... ms
 *
 * Every dialog starts at the same moment; within a dialog the steps are
 * sequential (an aggregator sends the next input once the screen came back).
 * Latencies are per step (request sent -> whole response read).
 *
 * Usage:
 *   node tests/bench/ussd_http.js --url http://127.0.0.1:8080 --token TOKEN [-n 500] [-k 2]
 *        [--prefix 8498] [--json]
 *   (SG_USSD_URL / SG_USSD_TOKEN may replace --url / --token.)
 *
 * The token is a partner API token: `bin/skillctl -c var/skillgate.conf token
 * create --role partner --name bench` against the daemon of `make run`
 * (RUN_DETACH=1 bash scripts/run.sh). Dialogs: step 1 dials (text ""), steps
 * 2..K-1 go to the quiz menu and back ("1", "0", ...), step K shows the
 * progress screen ("3"); each dialog uses its own fresh phone number and
 * session id. No dependencies beyond node itself.
 */
const http = require('node:http');

function usage(msg) {
	if (msg) process.stderr.write(`ussd_http: ${msg}\n`);
	process.stderr.write('usage: node tests/bench/ussd_http.js --url URL --token TOKEN [-n N] [-k K] [--prefix 8498] [--json]\n');
	process.exit(2);
}

function parseArgs(argv) {
	const o = {
		url: process.env.SG_USSD_URL || '', token: process.env.SG_USSD_TOKEN || '',
		n: 150, k: 2, prefix: '8498', json: false,
	};
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
		if (a === '--url') o.url = val();
		else if (a === '--token') o.token = val();
		else if (a === '-n' || a === '--dialogs') o.n = Number(val());
		else if (a === '-k' || a === '--steps') o.k = Number(val());
		else if (a === '--prefix') o.prefix = val();
		else if (a === '--json') o.json = true;
		else if (a === '-h' || a === '--help') usage();
		else usage(`unknown argument ${a}`);
	}
	if (!o.url) usage('--url is required');
	if (!o.token) usage('--token is required');
	if (!Number.isInteger(o.n) || o.n < 1) usage('-n must be a positive integer');
	if (!Number.isInteger(o.k) || o.k < 1 || o.k > 16) usage('-k must be 1..16');
	if (!/^[0-9]{2,6}$/.test(o.prefix)) usage('--prefix: 2 to 6 digits');
	return o;
}

/* The inputs of a K-step dialog, as "text" fields (inputs so far joined with '*'). */
function texts(k) {
	const inputs = [];
	const out = [''];
	for (let s = 2; s <= k; s++) {
		inputs.push(s === k ? '3' : (s % 2 === 0 ? '1' : '0'));
		out.push(inputs.join('*'));
	}
	return out;
}

function post(agent, url, token, body) {
	return new Promise((resolve) => {
		const t0 = process.hrtime.bigint();
		const req = http.request(url, {
			method: 'POST', agent,
			headers: {
				'content-type': 'application/x-www-form-urlencoded',
				'content-length': Buffer.byteLength(body),
				authorization: `Bearer ${token}`,
			},
		}, (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('end', () => resolve({
				status: res.statusCode, body: Buffer.concat(chunks).toString(),
				ms: Number(process.hrtime.bigint() - t0) / 1e6,
			}));
			res.on('error', (e) => resolve({ status: 0, body: String(e), ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
		});
		req.on('error', (e) => resolve({ status: 0, body: String(e), ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
		req.end(body);
	});
}

function pct(sorted, p) {
	if (sorted.length === 0) return NaN;
	const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
	return sorted[i];
}

async function main() {
	const o = parseArgs(process.argv.slice(2));
	const url = new URL('/ussd', o.url).toString();
	const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
	const steps = texts(o.k);
	const run = `${process.pid.toString(36)}${Date.now().toString(36)}`;
	const base = Math.floor(Math.random() * 1e6);
	const lat = [];
	const errors = [];

	async function dialog(i) {
		const num = `${o.prefix}${String((base + i * 7919) % 10 ** (11 - o.prefix.length)).padStart(11 - o.prefix.length, '0')}`;
		const form = { sessionId: `bench-${run}-${i}`, serviceCode: '*8079#', phoneNumber: `+${num}`, networkCode: '45204' };
		for (let s = 0; s < steps.length; s++) {
			const r = await post(agent, url, o.token, new URLSearchParams({ ...form, text: steps[s] }).toString());
			lat.push(r.ms);
			if (r.status !== 200 || !/^CON /.test(r.body)) {
				errors.push(`${r.status} ${r.body.slice(0, 60)}`);
				return;
			}
		}
	}

	const t0 = process.hrtime.bigint();
	await Promise.all(Array.from({ length: o.n }, (_, i) => dialog(i)));
	const wall = Number(process.hrtime.bigint() - t0) / 1e6;
	agent.destroy();
	const sorted = lat.slice().sort((a, b) => a - b);
	const ok = lat.length - errors.length;
	const r = {
		n: o.n, k: o.k, steps: lat.length, ok, err: errors.length,
		p50: pct(sorted, 50), p99: pct(sorted, 99), max: sorted[sorted.length - 1],
		steps_per_s: ok / (wall / 1000), wall,
	};
	if (o.json) {
		process.stdout.write(`${JSON.stringify(r)}\n`);
	} else {
		const f = (x) => x.toFixed(0);
		process.stdout.write(`ussd_http N=${r.n} K=${r.k} steps=${r.steps} ok=${r.ok} err=${r.err} ` +
			`p50=${f(r.p50)} p99=${f(r.p99)} max=${f(r.max)} ms steps/s=${f(r.steps_per_s)} wall=${f(r.wall)} ms\n`);
	}
	if (errors.length > 0) {
		const first = [...new Set(errors)].slice(0, 3).join(' | ');
		process.stderr.write(`ussd_http: ${errors.length} failed steps, e.g. ${first}\n`);
		process.exitCode = 1;
	}
}

main().catch((e) => { process.stderr.write(`ussd_http: ${e.stack || e}\n`); process.exit(1); });
