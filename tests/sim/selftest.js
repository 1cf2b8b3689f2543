'use strict';
/*
 * selftest.js — checks the SMSC simulator (smsc.js, smsc-cli.js) against a node-smpp client.
 * Run: node --test tests/sim/selftest.js
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const http = require('node:http');
const smpp = require('smpp');
const { SmscSim, gsmDecode, gsmEncode, decodeText } = require('./smsc');

const SYS = { system_id: 'skillgate', password: 'secret' };

function connect(port) {
	return new Promise((resolve, reject) => {
		const c = smpp.connect({ host: '127.0.0.1', port });
		c.once('connect', () => resolve(c));
		c.once('error', reject);
	});
}

function call(c, cmd, fields) {
	return new Promise((resolve) => c[cmd](fields || {}, (pdu) => resolve(pdu)));
}

async function bound(port, cmd = 'bind_transceiver', creds = SYS) {
	const c = await connect(port);
	c.on('error', () => {});
	const r = await call(c, cmd, creds);
	assert.equal(r.command_status, 0, 'bind ok');
	return c;
}

/* Collect deliver_sm on a client, answering each with `status` (default 0). */
function collectDeliver(c, status = 0) {
	const got = [];
	c.on('deliver_sm', (pdu) => {
		got.push(pdu);
		c.send(pdu.response({ command_status: status }));
	});
	return got;
}

function close(c) {
	return new Promise((r) => { c.on('close', r); c.destroy(); });
}

async function withSim(opts, fn) {
	const sim = new SmscSim(Object.assign({ port: 0 }, opts));
	await sim.start();
	try {
		await fn(sim);
	} finally {
		await sim.stop();
	}
}

test('codec: GSM 03.38 unpacked, UCS-2, latin1', () => {
	const s = 'Hello @£$ {€} [x] ü';
	assert.equal(gsmDecode(gsmEncode(s)), s);
	assert.equal(gsmEncode('{').length, 2);
	assert.equal(decodeText(Buffer.from([0x00, 0x6c, 0x1e, 0xa1]), 8), 'lạ');
	assert.equal(decodeText(Buffer.from('caf\xe9', 'latin1'), 3), 'café');
	assert.equal(decodeText(Buffer.from([0x41, 0x00]), 0xf0), 'A@');
});

test('bind: good credentials in all modes, bad password and system_id rejected header-only', async () => {
	await withSim({}, async (sim) => {
		for (const cmd of ['bind_transceiver', 'bind_transmitter', 'bind_receiver']) {
			const c = await bound(sim.port, cmd);
			await close(c);
		}
		assert.deepEqual(sim.binds.map((b) => b.mode), ['transceiver', 'transmitter', 'receiver']);
		const c = await connect(sim.port);
		let r = await call(c, 'bind_transceiver', { system_id: 'skillgate', password: 'wrong' });
		assert.equal(r.command_status, 0x0e);
		assert.equal(r.command_length, 16);
		r = await call(c, 'bind_transceiver', { system_id: 'nobody', password: 'secret' });
		assert.equal(r.command_status, 0x0f);
		r = await call(c, 'submit_sm', { destination_addr: '1', short_message: 'x' });
		assert.equal(r.command_status, 0x04, 'submit before bind -> RINVBNDSTS');
		assert.equal(sim.boundCount(), 0);
		await close(c);
	});
});

test('submit_sm gets a hex id and a receipt (appendix B text + TLVs)', async () => {
	await withSim({ idStart: 3000000000 }, async (sim) => {
		const c = await bound(sim.port);
		const dl = collectDeliver(c);
		const r = await call(c, 'submit_sm', {
			source_addr: '8079', destination_addr: '84912345678', registered_delivery: 1,
			data_coding: 0, short_message: 'Cau 1: ban co biet?',
		});
		assert.equal(r.command_status, 0);
		assert.equal(r.message_id, (3000000000).toString(16));
		await sim.waitFor(() => dl.length >= 1, 3000);
		const d = dl[0];
		assert.equal(d.esm_class, 0x04);
		assert.equal(d.receipted_message_id, r.message_id);
		assert.equal(d.message_state, 2);
		assert.equal(d.source_addr, '84912345678');
		assert.equal(d.destination_addr, '8079');
		assert.match(d.short_message.message,
			/^id:3000000000 sub:001 dlvrd:001 submit date:\d{10} done date:\d{10} stat:DELIVRD err:000 text:Cau 1. ban co biet./);
		assert.equal(sim.submits.length, 1);
		const s = sim.submits[0];
		assert.equal(s.text, 'Cau 1: ban co biet?');
		assert.equal(s.to, '84912345678');
		assert.equal(s.messageId, r.message_id);
		await sim.waitFor(() => sim.counters.deliverResps[0] === 1, 2000);
		await close(c);
	});
});

test('receipt failure stat, decimal ids, receipt before resp', async () => {
	await withSim({ idBase: 'dec', receiptStat: () => 'UNDELIV', receiptBeforeResp: true }, async (sim) => {
		const c = await bound(sim.port);
		const order = [];
		c.on('deliver_sm', (pdu) => { order.push('dlr'); c.send(pdu.response()); });
		const r = await call(c, 'submit_sm', { destination_addr: '84912345678', registered_delivery: 1, short_message: 'x' });
		order.push('resp');
		await sim.waitFor(() => order.length >= 2, 3000);
		assert.deepEqual(order, ['dlr', 'resp']);
		assert.match(r.message_id, /^\d+$/);
		await close(c);
	});
});

test('throttle every 2nd submit_sm with ESME_RTHROTTLED', async () => {
	await withSim({ throttleEvery: 2, receipts: false }, async (sim) => {
		const c = await bound(sim.port, 'bind_transmitter');
		const st = [];
		for (let i = 0; i < 4; i++) {
			const r = await call(c, 'submit_sm', { destination_addr: '84912345678', short_message: `m${i}` });
			st.push(r.command_status);
		}
		assert.deepEqual(st, [0, 0x58, 0, 0x58]);
		assert.equal(sim.counters.throttled, 2);
		assert.equal(sim.submits.length, 2);
		assert.equal(sim.refused.length, 2);
		await close(c);
	});
});

test('submit decoding: UCS-2 with 8-bit UDH, 16-bit UDH, SAR, reassembly, USSD TLVs', async () => {
	await withSim({ receipts: false }, async (sim) => {
		const c = await bound(sim.port);
		const ucs = (s) => { const b = Buffer.from(s, 'utf16le'); for (let i = 0; i < b.length; i += 2) { const t = b[i]; b[i] = b[i + 1]; b[i + 1] = t; } return b; };
		/* two parts sent out of order, UCS-2, 8-bit UDH */
		for (const [seq, t] of [[2, 'ỹ thôn'], [1, 'Chào bạn, Đà Nẵng ']]) {
			const r = await call(c, 'submit_sm', {
				destination_addr: '84912345678', esm_class: 0x40, data_coding: 8,
				short_message: Buffer.concat([Buffer.from([5, 0, 3, 0x2a, 2, seq]), ucs(t)]),
			});
			assert.equal(r.command_status, 0);
		}
		/* 16-bit UDH, GSM */
		for (const seq of [1, 2]) {
			await call(c, 'submit_sm', {
				destination_addr: '84900000001', esm_class: 0x40, data_coding: 0,
				short_message: Buffer.concat([Buffer.from([6, 8, 4, 0x12, 0x34, 2, seq]), gsmEncode(seq === 1 ? 'abc ' : '{def}')]),
			});
		}
		/* SAR */
		for (const seq of [1, 2, 3]) {
			await call(c, 'submit_sm', {
				destination_addr: '84900000002', data_coding: 3, short_message: Buffer.from(`p${seq}é`, 'latin1'),
				sar_msg_ref_num: 777, sar_total_segments: 3, sar_segment_seqnum: seq,
			});
		}
		/* USSD: continue (op 2) and end (op 17 + end bit) */
		await call(c, 'submit_sm', {
			service_type: 'USSD', destination_addr: '84912345678', short_message: Buffer.from('1 Quiz'),
			data_coding: 0, ussd_service_op: 2, its_session_info: Buffer.from([7, 2]),
		});
		await call(c, 'submit_sm', {
			service_type: 'USSD', destination_addr: '84912345678', short_message: Buffer.from('Bye'),
			data_coding: 0, ussd_service_op: 17, its_session_info: Buffer.from([7, 5]), user_message_reference: 99,
		});
		const s0 = sim.submits[0];
		assert.equal(s0.text, 'ỹ thôn');
		assert.deepEqual(s0.sar, { ref: 0x2a, total: 2, seq: 2, bits: 8 });
		assert.deepEqual([...s0.udh], [5, 0, 3, 0x2a, 2, 2]);
		assert.equal(sim.submits[3].sar.ref, 0x1234);
		assert.equal(sim.submits[4].sar.bits, 'sar');
		const u = sim.submits[sim.submits.length - 1];
		assert.equal(u.ussdServiceOp, 17);
		assert.equal(u.itsSessionInfo, 0x0705);
		assert.equal(u.ussdEnd, true);
		assert.equal(u.umr, 99);
		assert.equal(u.serviceType, 'USSD');
		assert.equal(sim.submits[sim.submits.length - 2].ussdEnd, false);
		const m = sim.messages();
		assert.deepEqual(m.map((x) => [x.to, x.text, x.parts]), [
			['84912345678', 'Chào bạn, Đà Nẵng ỹ thôn', 2],
			['84900000001', 'abc {def}', 2],
			['84900000002', 'p1ép2ép3é', 3],
			['84912345678', '1 Quiz', 1],
			['84912345678', 'Bye', 1],
		]);
		assert.deepEqual(m[4].ussd, { op: 17, end: true, session: 7 });
		await close(c);
	});
});

test('deliver: udh8 parts in a chosen order, statuses per part; receiver-only round robin', async () => {
	await withSim({}, async (sim) => {
		const tx = await bound(sim.port, 'bind_transmitter');
		const rx = await bound(sim.port, 'bind_receiver');
		const got = collectDeliver(rx);
		tx.on('deliver_sm', () => assert.fail('deliver_sm on a transmitter session'));
		const text = 'HOC 1 '.repeat(40).trim(); /* 239 chars -> 2 parts of <= 153 */
		const st = await sim.deliver({ from: '84912345678', to: '8079', text, dataCoding: 0, parts: 'udh8', order: [2, 1] });
		assert.deepEqual(st, [0, 0]);
		assert.equal(got.length, 2);
		const udhs = got.map((p) => [...p.short_message.udh[0]]);
		assert.equal(udhs[0][4], 2, 'part 2 first');
		assert.equal(udhs[1][4], 1);
		assert.equal(udhs[0][2], udhs[1][2], 'same ref');
		assert.equal(got[1].short_message.message + got[0].short_message.message, text);
		assert.ok(got.every((p) => (p.esm_class & 0x40) === 0x40));
		/* single part UCS-2 and the ESME's error status is reported */
		rx.removeAllListeners('deliver_sm');
		rx.on('deliver_sm', (pdu) => rx.send(pdu.response({ command_status: 0x08 })));
		assert.equal(await sim.deliver({ from: '0912345678', text: 'Xin chào' }), 0x08);
		assert.equal(sim.counters.deliverResps[8], 1);
		await close(tx);
		await close(rx);
	});
});

test('enquire_link answered both ways, unknown command gets generic_nack, unbind answered', async () => {
	await withSim({ enquireLinkMs: 50 }, async (sim) => {
		const c = await bound(sim.port);
		let serverEl = 0;
		c.on('enquire_link', (pdu) => { serverEl++; c.send(pdu.response()); });
		const r = await call(c, 'enquire_link');
		assert.equal(r.command, 'enquire_link_resp');
		assert.equal(r.command_status, 0);
		const nack = new Promise((resolve) => c.once('generic_nack', resolve));
		const raw = Buffer.alloc(16);
		raw.writeUInt32BE(16, 0); raw.writeUInt32BE(0x00000999, 4); raw.writeUInt32BE(0, 8); raw.writeUInt32BE(4242, 12);
		c.socket.write(raw);
		const n = await nack;
		assert.equal(n.command_status, 0x03);
		assert.equal(n.sequence_number, 4242);
		await sim.waitFor(() => serverEl >= 1, 2000);
		const u = await call(c, 'unbind');
		assert.equal(u.command, 'unbind_resp');
		assert.equal(sim.counters.unbinds, 1);
		await sim.waitFor(() => sim.boundCount() === 0, 2000);
		c.destroy();
	});
});

test('deliverRaw, oversize PDU destroys the session, silent mode, kill and restart on the same port', async () => {
	await withSim({}, async (sim) => {
		let c = await bound(sim.port);
		c.on('deliver_sm', (pdu) => c.send(pdu.response({ command_status: 0x61 })));
		/* a hand-made deliver_sm (seq 0, empty body fields) */
		const body = Buffer.from('\0\x01\x01123\0\x00\x00456\0\x00\x00\x00\0\0\x00\x00\x00\x00\x02hi', 'latin1');
		const raw = Buffer.alloc(16 + body.length);
		raw.writeUInt32BE(raw.length, 0); raw.writeUInt32BE(5, 4); raw.writeUInt32BE(0, 8); raw.writeUInt32BE(0, 12);
		body.copy(raw, 16);
		const resp = await sim.deliverRaw(raw, 2000);
		assert.equal(resp.command_id, 0x80000005);
		assert.equal(resp.command_status, 0x61);
		assert.equal(resp.sequence_number, 0);
		assert.ok(Buffer.isBuffer(resp.raw));
		/* oversize command_length from the ESME */
		const closed = new Promise((r) => c.once('close', r));
		const big = Buffer.alloc(16);
		big.writeUInt32BE(20000, 0); big.writeUInt32BE(4, 4);
		c.socket.write(big);
		await closed;
		await sim.waitFor(() => sim.sessions.size === 0, 2000);
		/* silent */
		c = await bound(sim.port);
		sim.setSilent(true);
		const el = await Promise.race([call(c, 'enquire_link'), new Promise((r) => setTimeout(() => r('timeout'), 300))]);
		assert.equal(el, 'timeout');
		sim.setSilent(false);
		/* kill + restart */
		const killed = new Promise((r) => c.once('close', r));
		sim.kill();
		await killed;
		const port = sim.port;
		await sim.stop();
		await sim.start();
		assert.equal(sim.port, port);
		c = await bound(port);
		assert.equal(sim.boundCount(), 1);
		await close(c);
	});
});

test('receipts wait for a receiver when none is bound (transmitter only), then flow', async () => {
	await withSim({}, async (sim) => {
		const tx = await bound(sim.port, 'bind_transmitter');
		await call(tx, 'submit_sm', { destination_addr: '84912345678', registered_delivery: 1, short_message: 'x' });
		assert.equal(sim._pendingReceipts.length, 1);
		const rx = await connect(sim.port);
		const got = collectDeliver(rx);
		await call(rx, 'bind_receiver', SYS);
		await sim.waitFor(() => got.length === 1, 2000);
		assert.equal(got[0].esm_class, 4);
		await close(tx);
		await close(rx);
	});
});

test('TLS server: bind and submit over TLS', async (t) => {
	const os = require('node:os');
	const fs = require('node:fs');
	const { execFileSync } = require('node:child_process');
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smscsim-'));
	try {
		execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
			'-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'c.pem')], { stdio: 'ignore' });
	} catch (e) {
		t.skip('openssl not available');
		return;
	}
	const tls = { key: fs.readFileSync(path.join(dir, 'k.pem'), 'utf8'), cert: fs.readFileSync(path.join(dir, 'c.pem'), 'utf8') };
	fs.rmSync(dir, { recursive: true, force: true });
	await withSim({ tls, receipts: false }, async (sim) => {
		const c = await new Promise((resolve, reject) => {
			const s = smpp.connect({ host: '127.0.0.1', port: sim.port, tls: true, rejectUnauthorized: false });
			s.once('secureConnect', () => resolve(s));
			s.once('error', reject);
		});
		c.on('error', () => {});
		assert.equal((await call(c, 'bind_transceiver', SYS)).command_status, 0);
		assert.equal((await call(c, 'submit_sm', { destination_addr: '84912345678', short_message: 'tls' })).command_status, 0);
		assert.equal(sim.submits[0].text, 'tls');
		assert.equal(sim.submits[0].session, 0);
		await close(c);
	});
});

function httpReq(port, method, p, body) {
	return new Promise((resolve, reject) => {
		const data = body ? JSON.stringify(body) : null;
		const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: data ? { 'content-type': 'application/json' } : {} }, (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('end', () => {
				try { resolve({ code: res.statusCode, body: JSON.parse(Buffer.concat(chunks).toString()) }); } catch (e) { reject(e); }
			});
		});
		req.on('error', reject);
		if (data) req.write(data);
		req.end();
	});
}

test('CLI: control HTTP /mo, /mt long poll, /ussd, /stats', async () => {
	const child = spawn(process.execPath, [path.join(__dirname, 'smsc-cli.js'), '--port', '0', '--control', '0', '--receipts', '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] });
	try {
		const line = await new Promise((resolve, reject) => {
			let buf = '';
			child.stdout.on('data', (d) => {
				buf += d;
				if (buf.includes('\n')) resolve(buf.split('\n')[0]);
			});
			child.once('exit', (code) => reject(new Error(`cli exited ${code}`)));
		});
		const m = /^listening smpp=(\d+) control=(\d+)$/.exec(line);
		assert.ok(m, line);
		const [smppPort, ctl] = [Number(m[1]), Number(m[2])];
		const c = await bound(smppPort);
		const got = collectDeliver(c);
		const mo = await httpReq(ctl, 'POST', '/mo', { from: '0912345678', to: '8079', text: 'HOC 1' });
		assert.deepEqual(mo.body, { status: 0 });
		assert.equal(got[0].short_message.message, 'HOC 1');
		assert.equal(got[0].source_addr, '0912345678');
		/* long poll started before the MT arrives */
		const poll = httpReq(ctl, 'GET', '/mt?to=0912345678&after=0&wait=5');
		await new Promise((r) => setTimeout(r, 100));
		for (const seq of [1, 2]) {
			await call(c, 'submit_sm', {
				source_addr: '8079', destination_addr: '84912345678', esm_class: 0x40, data_coding: 0,
				short_message: Buffer.concat([Buffer.from([5, 0, 3, 9, 2, seq]), gsmEncode(seq === 1 ? 'Cau hoi 1: ' : 'A hay B?')]),
			});
		}
		const mt = await poll;
		assert.equal(mt.code, 200);
		assert.equal(mt.body.messages.length, 1);
		assert.equal(mt.body.messages[0].text, 'Cau hoi 1: A hay B?');
		assert.equal(mt.body.messages[0].ussd, null);
		const next = mt.body.next;
		const empty = await httpReq(ctl, 'GET', `/mt?to=84912345678&after=${next}&wait=0`);
		assert.deepEqual(empty.body.messages, []);
		const other = await httpReq(ctl, 'GET', '/mt?to=84999999999&after=0&wait=0');
		assert.deepEqual(other.body.messages, []);
		/* USSD begin then answer */
		const ub = await httpReq(ctl, 'POST', '/ussd', { from: '84912345678', text: '*8079#' });
		assert.equal(typeof ub.body.session, 'number');
		const begin = got[got.length - 1];
		assert.equal(begin.ussd_service_op, 1);
		assert.equal(begin.its_session_info.readUInt16BE(0), ub.body.session << 8);
		await call(c, 'submit_sm', {
			service_type: 'USSD', destination_addr: '84912345678', short_message: Buffer.from('1 Quiz 2 Tu danh gia'),
			ussd_service_op: 2, its_session_info: Buffer.from([ub.body.session, 2]),
		});
		const ua = await httpReq(ctl, 'POST', '/ussd', { from: '84912345678', text: '1', session: ub.body.session });
		assert.equal(ua.body.session, ub.body.session);
		const ans = got[got.length - 1];
		assert.equal(ans.ussd_service_op, 18);
		assert.equal(ans.its_session_info.readUInt16BE(0), (ub.body.session << 8) | 2);
		const umt = await httpReq(ctl, 'GET', `/mt?to=84912345678&after=${next}&wait=2`);
		assert.deepEqual(umt.body.messages[0].ussd, { op: 2, end: false });
		const stats = await httpReq(ctl, 'GET', '/stats');
		assert.equal(stats.body.submits, 3);
		assert.equal(stats.body.bound, 1);
		assert.ok(stats.body.delivered >= 3);
		await close(c);
	} finally {
		child.kill('SIGTERM');
	}
});
