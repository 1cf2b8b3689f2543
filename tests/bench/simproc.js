'use strict';
/*
 * simproc.js — one SMSC simulator process for `make bench` (forked by bench.js, driven over IPC).
 *
 * Hosts tests/sim/smsc.js (recordSubmits:false, counters only) and the MO load generator for its
 * link, in the same process so that "deliver_sm sent" and "submit_sm received" are read on one
 * clock. MO deliver_sm are encoded here as raw bytes and written straight to the bound session
 * (sequence numbers from 0x40000000 up, so they never collide with the simulator's own receipts);
 * deliver_sm_resp are matched from the session's 'pdu' events.
 *
 * Residents: a "conversation" is one fresh number sending script[0..] (e.g. HOC 1, A, B, C, D, A).
 * The next message of a conversation goes once its previous one was answered: the first submit_sm
 * to the number ends the round trip, and the resident "reads" until no more segments arrive for
 * quietMs. A message not answered within timeoutMs retires the conversation (counted).
 *
 * IPC requests {id, cmd, ...} -> {id, ok, ...}:
 *   start {sim: SmscSim options}            -> {port}
 *   bound {n, ms}                           -> {bound}
 *   closed {base, concurrency, durationMs, warmupMs, script, quietMs, timeoutMs}
 *        closed loop: throughput -> {done, rate, timeouts, submits, cpu, ...}
 *   open {base, rate, durationMs, script, quietMs, timeoutMs}
 *        open loop at a fixed offered load -> {sent, answered, p50, p99, max, ...}
 *   counters {}                             -> {counters, cpu}
 *   stop {}
 */
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { SmscSim } = require('../sim/smsc');

let sim = null;
const pendingResp = new Map(); /* seq -> {t, cb} */
let seq = 0x40000000;

function now() { return Number(process.hrtime.bigint()) / 1e6; }

function cpuSnap() { return { c: process.cpuUsage(), t: now() }; }
function cpuSince(s) {
	const d = process.cpuUsage(s.c);
	return (d.user + d.system) / 1000 / Math.max(1, now() - s.t); /* fraction of one core */
}

/* deliver_sm: GSM-7 (ASCII subset) text from `from` to 8079. */
function deliverBuf(from, text, sq) {
	const body = Buffer.allocUnsafe(64 + text.length);
	let o = 0;
	body[o++] = 0;                              /* service_type "" */
	body[o++] = 1; body[o++] = 1;               /* source ton/npi */
	o += body.write(from, o, 'latin1'); body[o++] = 0;
	body[o++] = 0; body[o++] = 0;
	o += body.write('8079', o, 'latin1'); body[o++] = 0;
	body[o++] = 0; body[o++] = 0; body[o++] = 0; /* esm_class, protocol_id, priority */
	body[o++] = 0; body[o++] = 0;               /* schedule, validity */
	body[o++] = 0; body[o++] = 0; body[o++] = 0; body[o++] = 0; /* rd, replace, dc, default id */
	body[o++] = text.length;
	o += body.write(text, o, 'latin1');
	const b = Buffer.allocUnsafe(16 + o);
	b.writeUInt32BE(16 + o, 0);
	b.writeUInt32BE(0x00000005, 4);
	b.writeUInt32BE(0, 8);
	b.writeUInt32BE(sq >>> 0, 12);
	body.copy(b, 16, 0, o);
	return b;
}

let hooked = new WeakSet();
function rxSessions() {
	const out = [];
	for (const s of sim.sessions) {
		if (!s.bound || s.closed || s.mode === 'transmitter') continue;
		if (!hooked.has(s)) {
			hooked.add(s);
			s.session.on('pdu', (pdu) => {
				if (pdu.command_id !== 0x80000005) return;
				const p = pendingResp.get(pdu.sequence_number);
				if (p) { pendingResp.delete(pdu.sequence_number); p(pdu.command_status); }
			});
		}
		out.push(s);
	}
	return out;
}

let rr = 0;
function sendMo(from, text, onResp) {
	const rx = rxSessions();
	if (!rx.length) return false;
	const s = rx[rr++ % rx.length];
	const sq = seq;
	seq = seq >= 0x7ffffff0 ? 0x40000000 : seq + 1;
	if (onResp) pendingResp.set(sq, onResp);
	sim._write(s, deliverBuf(from, text, sq));
	return true;
}

/*
 * The resident model shared by both loops. onAnswered(conv, latencyMs) is called at the first
 * segment of the reply; onReady(conv) once the resident is ready to send again (after quietMs).
 */
class Residents {
	constructor(o) {
		this.o = o;
		this.next = o.base;
		this.waiting = new Map(); /* number -> conv */
		this.timeouts = 0;
		this.nacks = 0;
		this.submits = 0;
		this.extraSegments = 0;
		this.onSubmit = (sub) => this._submit(sub);
		sim.on('submit', this.onSubmit);
		this.tick = setInterval(() => this._sweep(), 250);
	}
	close() {
		sim.removeListener('submit', this.onSubmit);
		clearInterval(this.tick);
		for (const c of this.waiting.values()) if (c.timer) clearTimeout(c.timer);
	}
	newConv() { return { num: String(this.next++), step: 0, sentAt: 0, state: 'ready', timer: null }; }
	send(c) {
		const text = this.o.script[c.step % this.o.script.length];
		c.step++;
		c.state = 'sent';
		c.sentAt = now();
		this.waiting.set(c.num, c);
		return sendMo(c.num, text, (st) => { if (st !== 0) this.nacks++; });
	}
	_submit(sub) {
		this.submits++;
		const c = this.waiting.get(sub.to);
		if (!c) return;
		if (c.state === 'sent') {
			c.state = 'reading';
			this.onAnswered(c, now() - c.sentAt);
		} else {
			this.extraSegments++;
		}
		if (c.timer) clearTimeout(c.timer);
		c.timer = setTimeout(() => {
			c.timer = null;
			this.waiting.delete(c.num);
			this.onReady(c);
		}, this.o.quietMs);
	}
	_sweep() {
		const t = now();
		for (const c of this.waiting.values()) {
			if (c.state === 'sent' && t - c.sentAt > this.o.timeoutMs) {
				this.waiting.delete(c.num);
				this.timeouts++;
				this.onLost(c);
			}
		}
	}
}

function closedLoop(o) {
	return new Promise((resolve) => {
		const R = new Residents(o);
		const conc = o.concurrency;
		const lat = [];
		let done = 0;
		let measuring = false;
		let t0 = 0;
		let cpu0 = null;
		const stepsPerConv = o.script.length;
		const again = (c) => {
			if (c.step >= stepsPerConv) c = R.newConv();
			R.send(c);
		};
		R.onAnswered = (c, ms) => {
			if (measuring) { done++; if (lat.length < 200000) lat.push(ms); }
		};
		R.onReady = (c) => { if (!stopped) again(c); };
		R.onLost = (c) => { if (!stopped) again(R.newConv()); };
		let stopped = false;
		/* ramp the conversations in over ~1 s so the first batch is not one huge burst */
		let started = 0;
		const ramp = setInterval(() => {
			const k = Math.min(conc - started, Math.ceil(conc / 50));
			for (let i = 0; i < k; i++) again(R.newConv());
			started += k;
			if (started >= conc) clearInterval(ramp);
		}, 20);
		setTimeout(() => { measuring = true; t0 = now(); cpu0 = cpuSnap(); }, o.warmupMs);
		setTimeout(() => {
			measuring = false;
			stopped = true;
			const secs = (now() - t0) / 1000;
			const cpu = cpuSince(cpu0);
			clearInterval(ramp);
			lat.sort((a, b) => a - b);
			const pct = (q) => lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] : null;
			const r = {
				done, secs, rate: done / secs, timeouts: R.timeouts, nacks: R.nacks, submits: R.submits,
				cpu, p50: pct(0.5), p99: pct(0.99), max: lat.length ? lat[lat.length - 1] : null,
			};
			/* let the last answers drain before the next run */
			setTimeout(() => { R.close(); resolve(r); }, 1500);
		}, o.warmupMs + o.durationMs);
	});
}

/* Sends script (usually one message) from `total` fresh numbers, at most `concurrency` at once. */
function fill(o) {
	return new Promise((resolve) => {
		const R = new Residents(o);
		let started = 0;
		let active = 0;
		const cpu0 = cpuSnap();
		const t0 = now();
		const finish = () => {
			R.close();
			resolve({ started, timeouts: R.timeouts, nacks: R.nacks, secs: (now() - t0) / 1000, cpu: cpuSince(cpu0) });
		};
		const again = (c) => {
			if (!c || c.step >= o.script.length) {
				active--;
				if (started >= o.total) { if (active === 0) finish(); return; }
				c = R.newConv();
				started++;
				active++;
			}
			R.send(c);
		};
		R.onAnswered = () => {};
		R.onReady = (c) => again(c);
		R.onLost = () => again(null);
		const k = Math.min(o.concurrency, o.total);
		for (let i = 0; i < k; i++) { started++; active++; R.send(R.newConv()); }
	});
}

function openLoop(o) {
	return new Promise((resolve) => {
		const R = new Residents(o);
		const ready = [];
		const lat = [];
		let sent = 0;
		let answered = 0;
		let stopped = false;
		R.onAnswered = (c, ms) => { answered++; lat.push(ms); };
		R.onReady = (c) => { if (c.step < o.script.length) ready.push(c); };
		R.onLost = () => {};
		const t0 = now();
		const cpu0 = cpuSnap();
		/* the simulator's own stalls (GC, a busy loop) show up as latency: measured too */
		const eld = monitorEventLoopDelay({ resolution: 1 });
		eld.enable();
		let maxLag = 0;
		const pump = () => {
			if (stopped) return;
			const t = now();
			const due = Math.floor((t - t0) * o.rate / 1000);
			if (due - sent > maxLag) maxLag = due - sent;
			while (sent < due) {
				const c = ready.length ? ready.pop() : R.newConv();
				R.send(c);
				sent++;
			}
		};
		const iv = setInterval(pump, 1);
		setTimeout(() => {
			stopped = true;
			clearInterval(iv);
			const secs = (now() - t0) / 1000;
			const cpu = cpuSince(cpu0);
			eld.disable();
			setTimeout(() => {
				R.close();
				lat.sort((a, b) => a - b);
				const pct = (q) => lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] : null;
				resolve({
					sent, answered, offered: sent / secs, timeouts: R.timeouts, nacks: R.nacks, cpu, maxLag,
					loopP99: eld.percentile(99) / 1e6, loopMax: eld.max / 1e6,
					p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), max: lat.length ? lat[lat.length - 1] : null,
				});
			}, Math.min(o.timeoutMs, 3000));
		}, o.durationMs);
	});
}

let lastCpu = cpuSnap();
const handlers = {
	async start(m) {
		sim = new SmscSim(Object.assign({ port: 0, recordSubmits: false, reassemble: false }, m.sim || {}));
		await sim.start();
		return { port: sim.port };
	},
	async bound(m) {
		const t = Date.now() + (m.ms || 20000);
		while (sim.boundCount() < (m.n || 1) && Date.now() < t) await new Promise((r) => setTimeout(r, 20));
		return { bound: sim.boundCount() };
	},
	closed: (m) => (m.total ? fill(m) : closedLoop(m)),
	open: (m) => openLoop(m),
	async counters() {
		const cpu = cpuSince(lastCpu);
		lastCpu = cpuSnap();
		return { counters: sim.counters, cpu, pendingReceipts: sim._pendingReceipts.length, bound: sim.boundCount() };
	},
	async stop() {
		if (sim) await sim.stop();
		setImmediate(() => process.exit(0));
		return {};
	},
};

process.on('message', async (m) => {
	try {
		const r = await handlers[m.cmd](m);
		process.send(Object.assign({ id: m.id, ok: true }, r));
	} catch (e) {
		process.send({ id: m.id, ok: false, error: e.stack || String(e) });
	}
});
process.on('disconnect', () => process.exit(0));
