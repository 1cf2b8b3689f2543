#!/usr/bin/env node
'use strict';
/*
 * smsc-cli.js — run the SMSC simulator (smsc.js) as a process for `make run`, `skillctl phone` and benches.
 *
 *   node tests/sim/smsc-cli.js --port 2775 [--control 2776] [--host 127.0.0.1]
 *        [--system-id skillgate --password secret | --any-credentials] [--receipts] [--receipt-delay MS]
 *        [--throttle-every N] [--reject-every N] [--resp-delay MS] [--id-base hex|dec] [--dlr-id-base dec|hex]
 *        [--enquire-link MS] [--ussd] [--tls-key FILE --tls-cert FILE] [--no-record] [--quiet]
 *
 * Prints `listening smpp=<port> control=<port|0>` on stdout when ready (port 0 picks a free port).
 * Control HTTP server (JSON):
 *   POST /mo    {"from","to","text"[,"dataCoding","parts"]}   -> {"status":N} after deliver_sm_resp
 *   GET  /mt?to=MSISDN&after=N&wait=S  long poll -> {"next":M,"messages":[{seq,to,from,text,parts,ussd}]}
 *   POST /ussd  {"from","text"[,"session","to"]}  begin (no session) or answer -> {"session":n,"status":N}
 *   GET  /stats -> counters (+ bound, pendingReceipts, mtSeq)
 *   POST /silent {"on":true|false}, POST /kill (drop every SMPP connection)
 */
const http = require('http');
const fs = require('fs');
const { SmscSim } = require('./smsc');

function parseArgs(argv) {
	const a = {
		port: 2775, control: null, host: '127.0.0.1', systemId: 'skillgate', password: 'secret',
		receipts: false, receiptDelayMs: 0, throttleEvery: 0, rejectEvery: 0, respDelayMs: 0,
		idBase: 'hex', dlrIdBase: 'dec', enquireLinkMs: 0, ussd: false, tlsKey: null, tlsCert: null,
		record: true, quiet: false,
	};
	const num = (v, name) => {
		const n = Number(v);
		if (!Number.isFinite(n) || n < 0) throw new Error(`bad value for ${name}: ${v}`);
		return n;
	};
	for (let i = 2; i < argv.length; i++) {
		const k = argv[i];
		const v = () => {
			if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
			return argv[++i];
		};
		switch (k) {
		case '--port': a.port = num(v(), k); break;
		case '--control': a.control = num(v(), k); break;
		case '--host': a.host = v(); break;
		case '--system-id': a.systemId = v(); break;
		case '--password': a.password = v(); break;
		case '--any-credentials': a.systemId = null; a.password = null; break;
		case '--receipts': a.receipts = true; break;
		case '--no-receipts': a.receipts = false; break;
		case '--receipt-delay': a.receiptDelayMs = num(v(), k); break;
		case '--throttle-every': a.throttleEvery = num(v(), k); break;
		case '--reject-every': a.rejectEvery = num(v(), k); break;
		case '--resp-delay': a.respDelayMs = num(v(), k); break;
		case '--id-base': a.idBase = v(); break;
		case '--dlr-id-base': a.dlrIdBase = v(); break;
		case '--enquire-link': a.enquireLinkMs = num(v(), k); break;
		case '--ussd': a.ussd = true; break;
		case '--tls-key': a.tlsKey = v(); break;
		case '--tls-cert': a.tlsCert = v(); break;
		case '--no-record': a.record = false; break;
		case '--quiet': case '-q': a.quiet = true; break;
		case '--help': case '-h':
			process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(2, 20).join('\n') + '\n');
			process.exit(0);
			break;
		default: throw new Error(`unknown option ${k}`);
		}
	}
	return a;
}

/* Vietnamese-aware number comparison: 0912… / +84912… / 84912… are the same subscriber. */
function normMsisdn(s) {
	let d = String(s || '').replace(/[^0-9]/g, '');
	if (d.startsWith('00')) d = d.slice(2);
	else if (d.startsWith('0')) d = '84' + d.slice(1);
	return d;
}

function readJson(req, limit = 65536) {
	return new Promise((resolve, reject) => {
		let n = 0;
		const chunks = [];
		req.on('data', (c) => {
			n += c.length;
			if (n > limit) { reject(new Error('body too large')); req.destroy(); return; }
			chunks.push(c);
		});
		req.on('end', () => {
			const s = Buffer.concat(chunks).toString('utf8').trim();
			if (!s) { resolve({}); return; }
			try { resolve(JSON.parse(s)); } catch (e) { reject(new Error('invalid JSON')); }
		});
		req.on('error', reject);
	});
}

function send(res, code, obj) {
	const body = JSON.stringify(obj);
	res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
	res.end(body);
}

async function main() {
	let a;
	try {
		a = parseArgs(process.argv);
	} catch (e) {
		process.stderr.write(`smsc-cli: ${e.message}\n`);
		process.exit(2);
	}
	const log = a.quiet ? () => {} : (s) => process.stderr.write(`smsc: ${s}\n`);
	const sim = new SmscSim({
		port: a.port, host: a.host, systemId: a.systemId, password: a.password,
		receipts: a.receipts, receiptDelayMs: a.receiptDelayMs, throttleEvery: a.throttleEvery,
		rejectEvery: a.rejectEvery, respDelayMs: a.respDelayMs, idBase: a.idBase, dlrIdBase: a.dlrIdBase,
		enquireLinkMs: a.enquireLinkMs, ussdMode: a.ussd, recordSubmits: false,
		tls: a.tlsKey && a.tlsCert ? { key: fs.readFileSync(a.tlsKey, 'utf8'), cert: fs.readFileSync(a.tlsCert, 'utf8') } : null,
	});

	/* MT log for /mt long polls: reassembled messages with a running sequence number (bounded). */
	const MAX_MT = 50000;
	const mt = [];
	let mtSeq = 0;
	let waiters = [];
	if (a.record) {
		sim.on('message', (m) => {
			const e = { seq: ++mtSeq, to: m.to, from: m.from, text: m.text, parts: m.parts, ussd: m.ussd, _n: normMsisdn(m.to) };
			mt.push(e);
			if (mt.length > MAX_MT) mt.splice(0, MAX_MT >> 1);
			if (!a.quiet) log(`MT ${m.from} -> ${m.to}${m.ussd ? ` [ussd op=${m.ussd.op}${m.ussd.end ? ' end' : ''}]` : ''}: ${m.text}`);
			if (waiters.length) {
				const w = waiters;
				waiters = [];
				for (const f of w) f();
			}
		});
	}
	sim.on('bind', (b) => log(`bind ${b.mode} system_id=${b.systemId}`));
	sim.on('bind_failed', (b) => log(`bind ${b.mode} system_id=${b.systemId} refused status=0x${b.status.toString(16)}`));
	sim.on('unbind', (b) => log(`unbind ${b.mode || ''} system_id=${b.systemId}`));
	await sim.start();

	function collect(to, after) {
		const out = [];
		/* mt is sorted by seq: binary-search the first entry after `after` */
		let lo = 0;
		let hi = mt.length;
		while (lo < hi) {
			const mid = (lo + hi) >> 1;
			if (mt[mid].seq <= after) lo = mid + 1; else hi = mid;
		}
		for (let i = lo; i < mt.length && out.length < 500; i++) {
			if (!to || mt[i]._n === to) out.push(mt[i]);
		}
		return out;
	}

	async function handle(req, res) {
		const u = new URL(req.url, 'http://x');
		if (req.method === 'POST' && u.pathname === '/mo') {
			const b = await readJson(req);
			if (!b.from || b.text == null) { send(res, 400, { error: 'from and text required' }); return; }
			log(`MO ${b.from} -> ${b.to || '8079'}: ${b.text}`);
			const st = await sim.deliver({
				from: String(b.from), to: String(b.to || '8079'), text: String(b.text),
				dataCoding: b.dataCoding, parts: b.parts, timeoutMs: b.timeoutMs || 15000,
			});
			send(res, 200, { status: st });
		} else if (req.method === 'GET' && u.pathname === '/mt') {
			const to = u.searchParams.get('to') ? normMsisdn(u.searchParams.get('to')) : null;
			const after = Number(u.searchParams.get('after') || 0) || 0;
			const wait = Math.min(Math.max(Number(u.searchParams.get('wait') || 0) || 0, 0), 120);
			const deadline = Date.now() + wait * 1000;
			let out = collect(to, after);
			while (!out.length && Date.now() < deadline && !res.destroyed) {
				await new Promise((r) => {
					const t = setTimeout(() => { waiters = waiters.filter((f) => f !== fn); r(); }, deadline - Date.now());
					const fn = () => { clearTimeout(t); r(); };
					waiters.push(fn);
				});
				out = collect(to, after);
			}
			const next = out.length ? out[out.length - 1].seq : Math.max(after, mtSeq);
			send(res, 200, {
				next,
				messages: out.map((m) => ({ seq: m.seq, to: m.to, from: m.from, text: m.text, parts: m.parts, ussd: m.ussd ? { op: m.ussd.op, end: m.ussd.end } : null })),
			});
		} else if (req.method === 'POST' && u.pathname === '/ussd') {
			const b = await readJson(req);
			if (!b.from) { send(res, 400, { error: 'from required' }); return; }
			let r;
			if (b.session == null || b.session === '') {
				log(`USSD begin ${b.from}: ${b.text || '*8079#'}`);
				r = await sim.ussdBegin({ from: String(b.from), serviceCode: String(b.text || '*8079#'), to: b.to, timeoutMs: 15000 });
			} else {
				log(`USSD ${b.from} [${b.session}]: ${b.text}`);
				r = await sim.ussdAnswer({ from: String(b.from), text: String(b.text || ''), sessionNumber: Number(b.session), to: b.to, timeoutMs: 15000 });
			}
			send(res, 200, { session: r.session, status: r.status });
		} else if (req.method === 'GET' && u.pathname === '/stats') {
			send(res, 200, Object.assign({}, sim.counters, {
				bound: sim.boundCount(), pendingReceipts: sim._pendingReceipts.length, mtSeq,
			}));
		} else if (req.method === 'POST' && u.pathname === '/silent') {
			const b = await readJson(req);
			sim.setSilent(b.on !== false);
			send(res, 200, { silent: sim.silent });
		} else if (req.method === 'POST' && u.pathname === '/kill') {
			sim.kill();
			send(res, 200, { killed: true });
		} else {
			send(res, 404, { error: 'not found' });
		}
	}

	let controlPort = 0;
	let httpServer = null;
	if (a.control != null) {
		httpServer = http.createServer((req, res) => {
			handle(req, res).catch((e) => {
				if (!res.headersSent) send(res, 503, { error: e.message });
				else res.destroy();
			});
		});
		httpServer.keepAliveTimeout = 65000;
		await new Promise((resolve, reject) => {
			httpServer.once('error', reject);
			httpServer.listen(a.control, a.host, resolve);
		});
		controlPort = httpServer.address().port;
	}
	process.stdout.write(`listening smpp=${sim.port} control=${controlPort}\n`);

	let stopping = false;
	const shutdown = async () => {
		if (stopping) return;
		stopping = true;
		if (!a.quiet) process.stderr.write(`smsc: stats ${JSON.stringify(sim.counters)}\n`);
		if (httpServer) { httpServer.closeAllConnections(); httpServer.close(); }
		await sim.stop();
		process.exit(0);
	};
	process.on('SIGINT', shutdown);
	process.on('SIGTERM', shutdown);
}

main().catch((e) => {
	process.stderr.write(`smsc-cli: ${e.stack || e.message}\n`);
	process.exit(1);
});
