'use strict';
/*
 * smsc.js — SMSC simulator (a third-party SMPP 3.4 peer) for skillgate's integration tests,
 * `make run` and `make bench`. Built on the npm `smpp` package (node-smpp 0.5.1): its server,
 * sessions and PDU encoder; submit_sm/data_sm are decoded by our own fast byte parser so that
 * text, UDH, SAR and USSD TLVs are exact and the simulator stays cheap at >10k PDUs/s.
 *
 *   const { SmscSim } = require('./smsc');
 *   const sim = new SmscSim({ port: 0, systemId: 'skillgate', password: 'secret' });
 *   await sim.start();                       // sim.port is the bound port
 *
 * Options (defaults in DEFAULTS below):
 *   port, host, systemId, password (null = accept any; wrong -> header-only RINVSYSID/RINVPASWD),
 *   bindStatus (force every bind to fail with this status), tls {key, cert} (PEM) -> TLS server,
 *   idBase 'hex'|'dec' (submit_sm_resp id and receipted_message_id TLV), dlrIdBase 'dec'|'hex'
 *   (the "id:" in receipt text), idStart, receipts, receiptDelayMs, receiptStat (string or
 *   fn(submit) -> stat|null), receiptErr, receiptBeforeResp, throttleEvery/throttleStatus,
 *   rejectEvery/rejectStatus, submitStatus fn(submit, n) -> status (0 = accept), respDelayMs,
 *   enquireLinkMs, silent, ussdMode (USSD deliver_sm use service_type "USSD"), recordSubmits,
 *   maxRecords (bounded arrays), deliverTimeoutMs, rawReceipts (receipts written as raw bytes,
 *   their responses not awaited: the bench's lighter path).
 *
 * State: sim.submits (accepted submits: {to, from, text, dataCoding, esmClass, udh, sar, registeredDelivery,
 *   messageId, ussdServiceOp, itsSessionInfo, ussdEnd, itsEnd, umr, serviceType, session (index into
 *   sim.binds), at (ms), payload}),
 *   sim.refused (throttled/rejected submits with .status), sim.messages() (reassembled:
 *   [{to, from, text, parts, dataCoding, messageIds, ussd}]), sim.binds, sim.boundCount(), sim.counters.
 * Actions: waitFor(fn, ms), deliver({...}) -> status | [status per part],
 *   deliverRaw(buf, timeoutMs, bindIndex) -> next PDU|null,
 *   ussdBegin({from, serviceCode, sessionNumber}) / ussdAnswer({from, text, sessionNumber}) -> {session, status},
 *   setSilent(bool), kill(), stop(), start() (restarts on the same port), reset().
 * Events: 'bind', 'bind_failed', 'unbind', 'submit', 'message' (a complete reassembled MT), 'enquire_link',
 *   'deliver_resp', 'close' (session closed), 'error'.
 * Behaviour: enquire_link -> resp; unbind -> unbind_resp then close; unknown command -> generic_nack
 *   RINVCMDID; undecodable submit -> RINVCMDLEN; submit on a receiver/unbound session -> RINVBNDSTS;
 *   command_length < 16 or > 16 KiB -> session destroyed. Receipts (registered_delivery bit 0/1) go as
 *   deliver_sm esm_class 0x04 on the submitting transceiver, else round robin over receivers of the
 *   same system_id, else queued until one binds. Responses and receipts are written corked per tick;
 *   nothing is logged per PDU. With recordSubmits:false only counters are kept (for benches:
 *   ~35k submit_sm + 35k receipts/s, ~35k MO deliver_sm/s on the 2-core box).
 */
const EventEmitter = require('events');
const smpp = require('smpp');

const PDU = smpp.PDU;

const CMD = {
	generic_nack: 0x80000000,
	bind_receiver: 0x00000001,
	bind_transmitter: 0x00000002,
	submit_sm: 0x00000004,
	submit_sm_resp: 0x80000004,
	deliver_sm: 0x00000005,
	deliver_sm_resp: 0x80000005,
	unbind: 0x00000006,
	bind_transceiver: 0x00000009,
	enquire_link: 0x00000015,
	data_sm: 0x00000103,
	data_sm_resp: 0x80000103,
};

const ST = {
	ROK: 0x00, RINVMSGLEN: 0x01, RINVCMDLEN: 0x02, RINVCMDID: 0x03, RINVBNDSTS: 0x04, RALYBND: 0x05,
	RSYSERR: 0x08, RINVPASWD: 0x0e, RINVSYSID: 0x0f, RSUBMITFAIL: 0x45, RTHROTTLED: 0x58,
};

const TLV = {
	receipted_message_id: 0x001e, user_message_reference: 0x0204, sar_msg_ref_num: 0x020c,
	sar_total_segments: 0x020e, sar_segment_seqnum: 0x020f, network_error_code: 0x0423,
	message_payload: 0x0424, message_state: 0x0427, ussd_service_op: 0x0501, its_session_info: 0x1383,
};

const STATE_OF_STAT = {
	ENROUTE: 1, DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8,
};

const DEFAULTS = {
	port: 0,
	host: '127.0.0.1',
	systemId: 'skillgate',
	password: 'secret',
	bindStatus: 0,
	tls: null,
	idBase: 'hex',
	dlrIdBase: 'dec',
	idStart: null,
	receipts: true,
	receiptDelayMs: 0,
	receiptStat: 'DELIVRD',
	receiptErr: null,
	receiptBeforeResp: false,
	throttleEvery: 0,
	throttleStatus: ST.RTHROTTLED,
	rejectEvery: 0,
	rejectStatus: ST.RSUBMITFAIL,
	submitStatus: null,
	respDelayMs: 0,
	enquireLinkMs: 0,
	silent: false,
	ussdMode: false,
	recordSubmits: true,
	maxRecords: 200000,
	maxPendingReceipts: 200000,
	deliverTimeoutMs: 10000,
	reassemble: true,
	rawReceipts: false,
};

/* ---------------------------------------------------------------- GSM 03.38 (unpacked) */

const GSM_BASIC =
	'@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
	'¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
const GSM_EXT = { 0x0a: '\f', 0x14: '^', 0x28: '{', 0x29: '}', 0x2f: '\\', 0x3c: '[', 0x3d: '~', 0x3e: ']', 0x40: '|', 0x65: '€' };
const GSM_ENC = new Map();
const GSM_EXT_ENC = new Map();
for (let i = 0; i < 128; i++) if (i !== 0x1b) GSM_ENC.set(GSM_BASIC[i], i);
for (const k of Object.keys(GSM_EXT)) GSM_EXT_ENC.set(GSM_EXT[k], Number(k));

function gsmDecode(buf) {
	let s = '';
	for (let i = 0; i < buf.length; i++) {
		const b = buf[i];
		if (b === 0x1b) {
			if (i + 1 < buf.length) {
				const e = GSM_EXT[buf[++i]];
				s += e !== undefined ? e : ' ';
			}
		} else {
			s += b < 128 ? GSM_BASIC[b] : '?';
		}
	}
	return s;
}

/* Returns an array of per-character byte arrays (so callers can split without breaking escapes). */
function gsmEncodeChars(text) {
	const out = [];
	for (const ch of text) {
		const b = GSM_ENC.get(ch);
		if (b !== undefined) out.push([b]);
		else if (GSM_EXT_ENC.has(ch)) out.push([0x1b, GSM_EXT_ENC.get(ch)]);
		else out.push([0x3f]);
	}
	return out;
}

function gsmFits(text) {
	for (const ch of text) if (!GSM_ENC.has(ch) && !GSM_EXT_ENC.has(ch)) return false;
	return true;
}

/* Alphabet of an SMPP data_coding value: 'gsm' | 'ascii' | 'latin1' | 'ucs2' | 'binary'. */
function alphabetOf(dc) {
	if (dc === 0) return 'gsm';
	if (dc === 1) return 'ascii';
	if (dc === 3) return 'latin1';
	if (dc === 8) return 'ucs2';
	if (dc === 2 || dc === 4) return 'binary';
	if (dc < 0x10) return 'latin1';
	if ((dc & 0xf0) === 0xf0) return dc & 0x04 ? 'binary' : 'gsm';
	if ((dc & 0xc0) === 0x00) { /* general data coding group */
		const a = (dc >> 2) & 3;
		return a === 0 ? 'gsm' : a === 2 ? 'ucs2' : 'binary';
	}
	if ((dc & 0xf0) === 0xe0) return 'ucs2';
	if ((dc & 0xf0) === 0xc0 || (dc & 0xf0) === 0xd0) return 'gsm';
	return 'binary';
}

function decodeText(buf, dc) {
	switch (alphabetOf(dc)) {
	case 'gsm': return gsmDecode(buf);
	case 'ascii': return buf.toString('latin1');
	case 'latin1': return buf.toString('latin1');
	case 'ucs2': {
		const n = buf.length & ~1;
		const sw = Buffer.allocUnsafe(n);
		for (let i = 0; i < n; i += 2) { sw[i] = buf[i + 1]; sw[i + 1] = buf[i]; }
		return sw.toString('utf16le');
	}
	default: return buf.toString('latin1');
	}
}

/* Encode text into per-character byte arrays for the given data_coding. */
function encodeChars(text, dc) {
	switch (alphabetOf(dc)) {
	case 'gsm': return gsmEncodeChars(text);
	case 'ucs2': {
		const out = [];
		for (const ch of text) {
			const b = Buffer.from(ch, 'utf16le');
			const a = [];
			for (let i = 0; i < b.length; i += 2) a.push(b[i + 1], b[i]);
			out.push(a);
		}
		return out;
	}
	default: {
		const out = [];
		for (const ch of text) {
			const c = ch.codePointAt(0);
			out.push([c < 256 ? c : 0x3f]);
		}
		return out;
	}
	}
}

function encodeText(text, dc) {
	const chars = encodeChars(text, dc);
	let n = 0;
	for (const c of chars) n += c.length;
	const buf = Buffer.allocUnsafe(n);
	let o = 0;
	for (const c of chars) for (const b of c) buf[o++] = b;
	return buf;
}

/* Split text into encoded segments of at most maxBytes bytes, never splitting a character. */
function splitEncoded(text, dc, maxBytes) {
	const chars = encodeChars(text, dc);
	const segs = [];
	let cur = [];
	let len = 0;
	for (const c of chars) {
		if (len + c.length > maxBytes && cur.length) {
			segs.push(Buffer.from(cur));
			cur = [];
			len = 0;
		}
		for (const b of c) cur.push(b);
		len += c.length;
	}
	if (cur.length || !segs.length) segs.push(Buffer.from(cur));
	return segs;
}

/* ---------------------------------------------------------------- raw PDU parsing */

class Reader {
	constructor(buf, off) { this.b = buf; this.o = off; this.bad = false; }
	u8() {
		if (this.o >= this.b.length) { this.bad = true; return 0; }
		return this.b[this.o++];
	}
	cstr(max) {
		const end = this.b.indexOf(0, this.o);
		if (end < 0 || end - this.o > max) { this.bad = true; this.o = this.b.length; return ''; }
		const s = this.b.toString('latin1', this.o, end);
		this.o = end + 1;
		return s;
	}
	bytes(n) {
		if (this.o + n > this.b.length) { this.bad = true; n = Math.max(0, this.b.length - this.o); }
		const s = this.b.subarray(this.o, this.o + n);
		this.o += n;
		return s;
	}
	tlvs() {
		const t = new Map();
		while (this.o + 4 <= this.b.length) {
			const tag = this.b.readUInt16BE(this.o);
			const len = this.b.readUInt16BE(this.o + 2);
			this.o += 4;
			if (this.o + len > this.b.length) { this.bad = true; break; }
			t.set(tag, this.b.subarray(this.o, this.o + len));
			this.o += len;
		}
		if (this.o !== this.b.length) this.bad = true;
		return t;
	}
}

function tlvInt(t, tag, size) {
	const v = t.get(tag);
	if (!v) return null;
	if (v.length !== size) return NaN;
	return size === 1 ? v[0] : size === 2 ? v.readUInt16BE(0) : v.readUInt32BE(0);
}

/* Parse a submit_sm / data_sm body from the full PDU buffer into a plain object. */
function parseSubmit(buf, cmd) {
	const r = new Reader(buf, 16);
	const p = { command_id: cmd };
	p.service_type = r.cstr(5);
	p.source_addr_ton = r.u8(); p.source_addr_npi = r.u8(); p.source_addr = r.cstr(64);
	p.dest_addr_ton = r.u8(); p.dest_addr_npi = r.u8(); p.destination_addr = r.cstr(64);
	p.esm_class = r.u8();
	if (cmd === CMD.submit_sm) {
		p.protocol_id = r.u8(); p.priority_flag = r.u8();
		p.schedule_delivery_time = r.cstr(16); p.validity_period = r.cstr(16);
		p.registered_delivery = r.u8(); p.replace_if_present_flag = r.u8();
		p.data_coding = r.u8(); p.sm_default_msg_id = r.u8();
		const smLen = r.u8();
		p.short_message = r.bytes(smLen);
	} else {
		p.registered_delivery = r.u8();
		p.data_coding = r.u8();
		p.short_message = Buffer.alloc(0);
	}
	p.tlvs = r.bad ? new Map() : r.tlvs();
	p.malformed = r.bad;
	return p;
}

function hdr(buf) {
	return {
		command_length: buf.readUInt32BE(0), command_id: buf.readUInt32BE(4),
		command_status: buf.readUInt32BE(8), sequence_number: buf.readUInt32BE(12),
	};
}

function respBuf(cmdId, status, seq, body) {
	const blen = status ? 0 : body ? body.length : 0;
	const b = Buffer.allocUnsafe(16 + blen);
	b.writeUInt32BE(16 + blen, 0);
	b.writeUInt32BE(cmdId >>> 0, 4);
	b.writeUInt32BE(status >>> 0, 8);
	b.writeUInt32BE(seq >>> 0, 12);
	if (blen) body.copy(b, 16);
	return b;
}

/*
 * A receipt's deliver_sm (fields as _buildReceipt makes them) as raw bytes, for the bench
 * (rawReceipts): node-smpp's PDU encoder was a quarter of a bench simulator's CPU. Its
 * deliver_sm_resp is not waited for.
 */
function receiptBuf(f, seq) {
	const sm = f.short_message;
	const b = Buffer.allocUnsafe(64 + String(f.source_addr).length + String(f.destination_addr).length +
		sm.length + String(f.receipted_message_id).length + 16);
	let o = 16;
	const cstr = (v) => { o += b.write(String(v), o, 'latin1'); b[o++] = 0; };
	const tlv = (tag, len) => { b.writeUInt16BE(tag, o); b.writeUInt16BE(len, o + 2); o += 4; };
	cstr(f.service_type);
	b[o++] = f.source_addr_ton; b[o++] = f.source_addr_npi; cstr(f.source_addr);
	b[o++] = f.dest_addr_ton; b[o++] = f.dest_addr_npi; cstr(f.destination_addr);
	b[o++] = f.esm_class; b[o++] = 0; b[o++] = 0;     /* protocol_id, priority_flag */
	b[o++] = 0; b[o++] = 0;                           /* schedule_delivery_time, validity_period */
	b[o++] = 0; b[o++] = 0; b[o++] = f.data_coding; b[o++] = 0;
	b[o++] = sm.length; o += sm.copy(b, o);
	const id = String(f.receipted_message_id);
	tlv(TLV.receipted_message_id, id.length + 1); cstr(id);
	tlv(TLV.message_state, 1); b[o++] = f.message_state;
	if (f.network_error_code) { tlv(TLV.network_error_code, 3); o += f.network_error_code.copy(b, o); }
	b.writeUInt32BE(o, 0);
	b.writeUInt32BE(CMD.deliver_sm, 4);
	b.writeUInt32BE(0, 8);
	b.writeUInt32BE(seq >>> 0, 12);
	return b.subarray(0, o);
}

/*
 * Hook node-smpp's stream framing for the simulator's own sockets only (marked __smscSim): reject
 * command_length < 16 or > PDU.maxLength (the session is then destroyed), keep the raw bytes of every
 * PDU (pdu._raw), decode submit_sm/data_sm with parseSubmit (pdu._sub) and turn undecodable PDUs into
 * 'unknown'-like objects instead of exceptions. Other sockets (node-smpp clients) are untouched.
 */
const origCommandLength = PDU.commandLength;
const origFromStream = PDU.fromStream;
if (!PDU.__smscSimHooked) {
	PDU.__smscSimHooked = true;
	PDU.commandLength = function (stream) {
		if (!stream.__smscSim) return origCommandLength.call(PDU, stream);
		const b = stream.read(4);
		if (!b) return false;
		const len = b.readUInt32BE(0);
		if (len < 16 || len > PDU.maxLength) {
			const e = new Error(`PDU length was invalid (${len}, must be 16..${PDU.maxLength}).`);
			e.code = 'SMSCSIM_BADLEN';
			throw e;
		}
		return len;
	};
	PDU.fromStream = function (stream, len) {
		if (!stream.__smscSim) return origFromStream.call(PDU, stream, len);
		const rest = stream.read(len - 4);
		if (!rest) return false;
		const buf = Buffer.allocUnsafe(len);
		buf.writeUInt32BE(len, 0);
		rest.copy(buf, 4);
		const id = buf.readUInt32BE(4);
		let pdu;
		if (id === CMD.submit_sm || id === CMD.data_sm) {
			pdu = Object.create(PDU.prototype);
			Object.assign(pdu, hdr(buf));
			pdu.command = id === CMD.submit_sm ? 'submit_sm' : 'data_sm';
			pdu._sub = parseSubmit(buf, id);
		} else if (id === CMD.deliver_sm_resp) {
			/* the ESME's answer to every MO and receipt: read here, like submit_sm (node-smpp's
			 * generic parser is the simulator's largest cost per PDU at bench rates) */
			pdu = Object.create(PDU.prototype);
			Object.assign(pdu, hdr(buf));
			pdu.command = 'deliver_sm_resp';
			const nul = len > 16 ? buf.indexOf(0, 16) : -1;
			pdu.message_id = len > 16 ? buf.toString('latin1', 16, nul < 0 ? len : nul) : '';
		} else {
			try {
				pdu = new PDU(buf);
			} catch (e) {
				pdu = Object.create(PDU.prototype);
				Object.assign(pdu, hdr(buf));
				pdu.command = (id & 0x80000000) ? 'malformed_resp' : 'malformed';
				pdu._error = e;
			}
		}
		pdu._raw = buf;
		return pdu;
	};
}

/* ---------------------------------------------------------------- helpers */

function pad2(n) { return n < 10 ? '0' + n : '' + n; }
function smppDate(d) {
	return pad2(d.getFullYear() % 100) + pad2(d.getMonth() + 1) + pad2(d.getDate()) +
		pad2(d.getHours()) + pad2(d.getMinutes());
}
function pad3(n) { return ('00' + n).slice(-3); }
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
function modeOfBind(cmd) {
	return cmd === 'bind_transceiver' ? 'transceiver' : cmd === 'bind_receiver' ? 'receiver' : 'transmitter';
}
function u16(n) { const b = Buffer.alloc(2); b.writeUInt16BE(n & 0xffff, 0); return b; }

/* Parse a UDH (the bytes after the length octet are IEs); returns {ref, total, seq, bits}|null. */
function parseUdhConcat(udh) {
	let o = 1;
	while (o + 2 <= udh.length) {
		const iei = udh[o];
		const l = udh[o + 1];
		if (o + 2 + l > udh.length) break;
		if (iei === 0x00 && l === 3) return { ref: udh[o + 2], total: udh[o + 3], seq: udh[o + 4], bits: 8 };
		if (iei === 0x08 && l === 4) {
			return { ref: udh.readUInt16BE(o + 2), total: udh[o + 4], seq: udh[o + 5], bits: 16 };
		}
		o += 2 + l;
	}
	return null;
}

/* ---------------------------------------------------------------- the simulator */

class SmscSim extends EventEmitter {
	constructor(opts) {
		super();
		this.opts = Object.assign({}, DEFAULTS, opts || {});
		this.port = this.opts.port;
		this.host = this.opts.host;
		this.silent = !!this.opts.silent;
		this.server = null;
		this.sessions = new Set();
		this.submits = [];
		this.refused = [];
		this.binds = [];
		this._messages = [];
		this._partial = new Map();
		this._nextId = this.opts.idStart != null ? this.opts.idStart :
			1000000000 + (Date.now() % 1000000000);
		this._submitN = 0;
		this._sessIndex = 0;
		this._rr = 0;
		this._ref = 0;
		this._ussdNext = 1;
		this.ussdSessions = new Map();
		this._pendingReceipts = [];
		this._timers = new Set();
		this.counters = {
			submits: 0, accepted: 0, throttled: 0, rejected: 0, malformed: 0, delivered: 0,
			deliverResps: {}, receipts: 0, unbinds: 0, enquireLinks: 0, genericNacks: 0,
			genericNacksReceived: 0, binds: 0, bindFailures: 0, sessionErrors: 0,
		};
		this.on('error', () => {}); /* never crash the test process on an emitted error */
	}

	/* ------------------------------------------------------------ lifecycle */

	async start() {
		if (this.server) return this;
		const o = this.opts;
		const sopts = o.tls ? { key: o.tls.key, cert: o.tls.cert } : {};
		const server = smpp.createServer(sopts, (session) => this._onSession(session));
		server.on('error', (e) => this.emit('error', e));
		if (o.tls) {
			server.on('tlsClientError', () => {});
		}
		await new Promise((resolve, reject) => {
			const onErr = (e) => reject(e);
			server.once('error', onErr);
			server.listen(this.port, this.host, () => {
				server.removeListener('error', onErr);
				resolve();
			});
		});
		this.server = server;
		this.port = server.address().port;
		return this;
	}

	async stop() {
		const server = this.server;
		this.server = null;
		for (const t of this._timers) clearTimeout(t);
		this._timers.clear();
		this.kill();
		if (server) await new Promise((r) => server.close(() => r()));
	}

	/* Destroy every connection abruptly (SMSC crash). The listener stays up. */
	kill() {
		for (const s of this.sessions) {
			s.closed = true;
			s.bound = false;
			s.session.socket.destroy();
		}
	}

	/* Silent: keep TCP connections open but answer and send nothing (a hung SMSC). */
	setSilent(on) {
		this.silent = !!on;
		if (!this.silent && this._pendingReceipts.length) setImmediate(() => this._flushPendingReceipts());
	}

	/* Forget recorded submits, messages, binds and counters (not the id counter). */
	reset() {
		this.submits.length = 0;
		this.refused.length = 0;
		this._messages.length = 0;
		this._partial.clear();
		for (const k of Object.keys(this.counters)) this.counters[k] = k === 'deliverResps' ? {} : 0;
	}

	boundCount() {
		let n = 0;
		for (const s of this.sessions) if (s.bound && !s.closed) n++;
		return n;
	}

	/* Poll pred() every 10 ms until it is truthy; reject with a clear error after ms. */
	async waitFor(pred, ms = 5000, what) {
		const deadline = Date.now() + ms;
		for (;;) {
			const v = pred();
			if (v) return v;
			if (Date.now() >= deadline) {
				throw new Error(`SmscSim.waitFor timed out after ${ms} ms: ${what || pred.toString()} ` +
					`(submits=${this.counters.submits} accepted=${this.counters.accepted} bound=${this.boundCount()})`);
			}
			await sleep(10);
		}
	}

	messages() { return this._messages.slice(); }

	/* ------------------------------------------------------------ sessions */

	_onSession(session) {
		const socket = session.socket;
		socket.__smscSim = true;
		if (socket.setNoDelay) socket.setNoDelay(true);
		const s = {
			index: this._sessIndex++, bindIndex: null, session, socket, bound: false, closed: false, mode: null,
			systemId: null, rec: null, elTimer: null, corked: false,
		};
		this.sessions.add(s);
		session.on('pdu', (pdu) => this._onPdu(s, pdu));
		session.on('error', (e) => {
			this.counters.sessionErrors++;
			socket.destroy(); /* includes node-smpp's 16 KiB "PDU length was too large" */
		});
		session.on('close', () => {
			s.closed = true;
			if (s.elTimer) clearInterval(s.elTimer);
			this.sessions.delete(s);
			if (s.rec) s.rec.closedAt = new Date();
			/* fail outstanding requests quickly */
			for (const k of Object.keys(session._callbacks)) {
				const cb = session._callbacks[k];
				delete session._callbacks[k];
				try { cb(null); } catch (e) { /* ignore */ }
			}
			this.emit('close', { session: s.bindIndex, systemId: s.systemId, mode: s.mode });
		});
	}

	_write(s, buf) {
		if (s.closed || !s.socket.writable) return;
		if (!s.corked) {
			s.corked = true;
			s.socket.cork();
			process.nextTick(() => { s.corked = false; s.socket.uncork(); });
		}
		s.socket.write(buf);
	}

	_reply(s, pdu, status, body) {
		const id = (pdu.command_id | 0x80000000) >>> 0;
		this._write(s, respBuf(id, status, pdu.sequence_number, body));
	}

	_onPdu(s, pdu) {
		if (s.waitNext) s.waitNext(pdu);
		if (this.silent) return;
		if (pdu.isResponse()) {
			if (pdu.command_id === CMD.generic_nack) this.counters.genericNacksReceived++;
			return;
		}
		switch (pdu.command) {
		case 'submit_sm':
		case 'data_sm':
			return this._onSubmit(s, pdu);
		case 'enquire_link':
			this.counters.enquireLinks++;
			this._reply(s, pdu, 0);
			this.emit('enquire_link', { session: s.bindIndex });
			return;
		case 'bind_transceiver':
		case 'bind_receiver':
		case 'bind_transmitter':
			return this._onBind(s, pdu);
		case 'unbind':
			this.counters.unbinds++;
			this._reply(s, pdu, 0);
			s.bound = false;
			if (s.rec) s.rec.closedAt = new Date();
			this.emit('unbind', { session: s.bindIndex, systemId: s.systemId, mode: s.mode });
			setImmediate(() => s.socket.end());
			return;
		case 'unknown':
		case 'malformed':
			this.counters.genericNacks++;
			this._write(s, respBuf(CMD.generic_nack,
				pdu.command === 'unknown' ? ST.RINVCMDID : ST.RINVCMDLEN, pdu.sequence_number));
			return;
		default:
			/* known but unsupported request (query_sm, cancel_sm, deliver_sm from ESME, ...) */
			if (smpp.commands[pdu.command + '_resp']) this._reply(s, pdu, ST.RINVCMDID);
			else {
				this.counters.genericNacks++;
				this._write(s, respBuf(CMD.generic_nack, ST.RINVCMDID, pdu.sequence_number));
			}
		}
	}

	_onBind(s, pdu) {
		const o = this.opts;
		const mode = modeOfBind(pdu.command);
		let status = 0;
		if (s.bound) status = ST.RALYBND;
		else if (o.bindStatus) status = o.bindStatus;
		else if (o.systemId != null && pdu.system_id !== o.systemId) status = ST.RINVSYSID;
		else if (o.password != null && pdu.password !== o.password) status = ST.RINVPASWD;
		if (status) {
			this.counters.bindFailures++;
			this._reply(s, pdu, status);
			this.emit('bind_failed', { systemId: pdu.system_id, mode, status });
			return;
		}
		this.counters.binds++;
		s.bound = true;
		s.mode = mode;
		s.systemId = pdu.system_id;
		s.bindIndex = this.binds.length;
		s.rec = { systemId: pdu.system_id, mode, at: new Date(), closedAt: null, index: s.bindIndex };
		this.binds.push(s.rec);
		this._reply(s, pdu, 0, Buffer.from('SMSCSIM\0', 'latin1'));
		if (o.enquireLinkMs > 0) {
			s.elTimer = setInterval(() => {
				if (!this.silent && !s.closed) s.session.enquire_link(() => {});
			}, o.enquireLinkMs);
		}
		this.emit('bind', s.rec);
		if (mode !== 'transmitter' && this._pendingReceipts.length) {
			setImmediate(() => this._flushPendingReceipts());
		}
	}

	/* ------------------------------------------------------------ submit_sm */

	_newMessageId() {
		const n = this._nextId++;
		return n;
	}

	_fmtId(n, base) { return base === 'dec' ? String(n) : n.toString(16); }

	_onSubmit(s, pdu) {
		const o = this.opts;
		const c = this.counters;
		c.submits++;
		const n = ++this._submitN;
		const p = pdu._sub;
		const respId = p.command_id === CMD.submit_sm ? CMD.submit_sm_resp : CMD.data_sm_resp;
		if (!s.bound || s.mode === 'receiver') {
			this._write(s, respBuf(respId, ST.RINVBNDSTS, pdu.sequence_number));
			return;
		}
		if (p.malformed) {
			c.malformed++;
			this._write(s, respBuf(respId, ST.RINVCMDLEN, pdu.sequence_number));
			return;
		}
		const sub = this._decodeSubmit(s, p);
		let status = 0;
		if (o.throttleEvery > 0 && n % o.throttleEvery === 0) { status = o.throttleStatus; c.throttled++; }
		else if (o.rejectEvery > 0 && n % o.rejectEvery === 0) { status = o.rejectStatus; c.rejected++; }
		else if (o.submitStatus) {
			status = o.submitStatus(sub, n) || 0;
			if (status === ST.RTHROTTLED || status === 0x14) c.throttled++;
			else if (status) c.rejected++;
		}
		if (status) {
			sub.status = status;
			if (o.recordSubmits) this._push(this.refused, sub);
			this._sendResp(s, respBuf(respId, status, pdu.sequence_number));
			return;
		}
		c.accepted++;
		const idn = this._newMessageId();
		sub.messageId = this._fmtId(idn, o.idBase);
		sub._idn = idn;
		const body = Buffer.from(sub.messageId + '\0', 'latin1');
		const resp = respBuf(respId, 0, pdu.sequence_number, body);
		const rd = sub.registeredDelivery & 0x03;
		const wantReceipt = o.receipts && (rd === 1 || rd === 2);
		if (wantReceipt && o.receiptBeforeResp) {
			this._receipt(s, sub, true);
			/* give the receipt a head start on the wire */
			const t = setTimeout(() => { this._timers.delete(t); this._sendResp(s, resp, true); }, Math.max(5, o.respDelayMs));
			this._timers.add(t);
		} else {
			this._sendResp(s, resp);
			if (wantReceipt) this._receipt(s, sub, false);
		}
		if (o.recordSubmits) {
			this._push(this.submits, sub);
			if (o.reassemble) this._assemble(sub);
		} else if (o.reassemble && this.listenerCount('message')) {
			this._assemble(sub);
		}
		if (this.listenerCount('submit')) this.emit('submit', sub);
		if (sub.ussdServiceOp != null) this._ussdTrack(sub);
	}

	_push(arr, x) {
		arr.push(x);
		if (arr.length > this.opts.maxRecords) arr.splice(0, arr.length >> 1);
	}

	_sendResp(s, buf, noDelay) {
		const d = this.opts.respDelayMs;
		if (d > 0 && !noDelay) {
			const t = setTimeout(() => { this._timers.delete(t); this._write(s, buf); }, d);
			this._timers.add(t);
		} else {
			this._write(s, buf);
		}
	}

	_decodeSubmit(s, p) {
		const t = p.tlvs;
		const esm = p.esm_class;
		let sm = p.short_message;
		const payload = t.get(TLV.message_payload);
		if (payload && !sm.length) sm = payload;
		let udh = null;
		let sar = null;
		if ((esm & 0x40) && sm.length) {
			const l = sm[0];
			udh = Buffer.from(sm.subarray(0, Math.min(sm.length, l + 1)));
			sm = sm.subarray(Math.min(sm.length, l + 1));
			const cc = parseUdhConcat(udh);
			if (cc) sar = cc;
		}
		const sarRef = tlvInt(t, TLV.sar_msg_ref_num, 2);
		if (sarRef != null && !sar) {
			sar = {
				ref: sarRef, total: tlvInt(t, TLV.sar_total_segments, 1),
				seq: tlvInt(t, TLV.sar_segment_seqnum, 1), bits: 'sar',
			};
		}
		const its = tlvInt(t, TLV.its_session_info, 2);
		const op = t.get(TLV.ussd_service_op);
		const ussdServiceOp = op && op.length ? op[0] : null;
		return {
			to: p.destination_addr,
			from: p.source_addr,
			text: decodeText(sm, p.data_coding),
			dataCoding: p.data_coding,
			esmClass: esm,
			udh,
			sar,
			registeredDelivery: p.registered_delivery,
			messageId: null,
			ussdServiceOp,
			itsSessionInfo: its,
			/* end of dialogue: its_session_info end bit, or op 17 (PSSR response); itsEnd is the bit alone */
			ussdEnd: ussdServiceOp == null ? null : !!((its != null && (its & 1)) || ussdServiceOp === 0x11),
			itsEnd: its != null && !Number.isNaN(its) ? !!(its & 1) : null,
			umr: tlvInt(t, TLV.user_message_reference, 2),
			serviceType: p.service_type,
			destTon: p.dest_addr_ton,
			destNpi: p.dest_addr_npi,
			sourceTon: p.source_addr_ton,
			sourceNpi: p.source_addr_npi,
			payload: !!payload,
			command: p.command_id === CMD.submit_sm ? 'submit_sm' : 'data_sm',
			session: s.bindIndex,
			at: Date.now(),
		};
	}

	_assemble(sub) {
		if (!sub.sar || !(sub.sar.total > 1)) {
			this._complete({
				to: sub.to, from: sub.from, text: sub.text, parts: 1, dataCoding: sub.dataCoding,
				messageIds: [sub.messageId], ussd: this._ussdInfo(sub), at: sub.at,
			});
			return;
		}
		const key = `${sub.from}|${sub.to}|${sub.sar.bits}|${sub.sar.ref}|${sub.sar.total}`;
		let m = this._partial.get(key);
		if (!m) {
			m = { parts: new Array(sub.sar.total), got: 0, first: sub };
			this._partial.set(key, m);
			if (this._partial.size > 10000) this._partial.delete(this._partial.keys().next().value);
		}
		const i = sub.sar.seq - 1;
		if (i < 0 || i >= m.parts.length) return;
		if (!m.parts[i]) m.got++;
		m.parts[i] = sub;
		if (m.got === m.parts.length) {
			this._partial.delete(key);
			this._complete({
				to: sub.to, from: sub.from, text: m.parts.map((x) => x.text).join(''),
				parts: m.parts.length, dataCoding: m.first.dataCoding,
				messageIds: m.parts.map((x) => x.messageId), ussd: this._ussdInfo(sub), at: sub.at,
			});
		}
	}

	_complete(msg) {
		if (this.opts.recordSubmits) this._push(this._messages, msg);
		this.emit('message', msg);
	}

	_ussdInfo(sub) {
		if (sub.ussdServiceOp == null) return null;
		return { op: sub.ussdServiceOp, end: sub.ussdEnd, session: sub.itsSessionInfo != null ? sub.itsSessionInfo >> 8 : null };
	}

	/* ------------------------------------------------------------ receipts */

	_receipt(s, sub, immediate) {
		const o = this.opts;
		const stat = typeof o.receiptStat === 'function' ? o.receiptStat(sub) : o.receiptStat;
		if (!stat) return;
		if ((sub.registeredDelivery & 0x03) === 2 && stat === 'DELIVRD') return;
		const r = this._buildReceipt(sub, stat);
		const go = () => this._sendReceipt(s, r);
		if (o.receiptDelayMs > 0 && !immediate) {
			const t = setTimeout(() => { this._timers.delete(t); go(); }, o.receiptDelayMs);
			this._timers.add(t);
		} else {
			go();
		}
	}

	_buildReceipt(sub, stat) {
		const o = this.opts;
		const now = new Date();
		const ok = stat === 'DELIVRD';
		const err = o.receiptErr != null ? o.receiptErr : ok ? 0 : 1;
		const snippet = String(sub.text || '').slice(0, 20).replace(/[^A-Za-z0-9 ]/g, '.');
		const text = `id:${this._fmtId(sub._idn, o.dlrIdBase)} sub:001 dlvrd:${ok ? '001' : '000'} ` +
			`submit date:${smppDate(new Date(sub.at))} done date:${smppDate(now)} stat:${stat} ` +
			`err:${pad3(err)} text:${snippet}`;
		const f = {
			service_type: '',
			source_addr_ton: sub.destTon || 0, source_addr_npi: sub.destNpi || 0, source_addr: sub.to,
			dest_addr_ton: sub.sourceTon || 0, dest_addr_npi: sub.sourceNpi || 0, destination_addr: sub.from,
			esm_class: 0x04,
			data_coding: 0,
			/* the text is ASCII letters, digits, spaces, ':' and '.': the same bytes in GSM-7 */
			short_message: o.rawReceipts ? Buffer.from(text, 'latin1') : gsmEncodeBuf(text),
			receipted_message_id: sub.messageId,
			message_state: STATE_OF_STAT[stat] || 7,
		};
		if (!ok) f.network_error_code = Buffer.from([3, (err >> 8) & 0xff, err & 0xff]);
		return f;
	}

	_sendReceipt(prefer, fields) {
		const s = prefer && prefer.bound && !prefer.closed && prefer.mode === 'transceiver' ? prefer : this._pickRx(prefer && prefer.systemId);
		if (!s || this.silent) {
			if (this._pendingReceipts.length < this.opts.maxPendingReceipts) this._pendingReceipts.push(fields);
			return;
		}
		this.counters.receipts++;
		if (this.opts.rawReceipts) {
			this._rawSeq = this._rawSeq >= 0x2fffffff ? 0x20000000 : (this._rawSeq || 0x20000000) + 1;
			this._write(s, receiptBuf(fields, this._rawSeq));
			return;
		}
		this._sendDeliver(s, fields, this.opts.deliverTimeoutMs).catch(() => {});
	}

	_flushPendingReceipts() {
		const q = this._pendingReceipts;
		this._pendingReceipts = [];
		for (const f of q) this._sendReceipt(null, f);
	}

	_pickRx(systemId) {
		const rx = [];
		for (const s of this.sessions) {
			if (s.bound && !s.closed && s.mode !== 'transmitter' && (!systemId || s.systemId === systemId)) rx.push(s);
		}
		if (!rx.length) {
			if (systemId) return this._pickRx(null);
			return null;
		}
		return rx[this._rr++ % rx.length];
	}

	/* Send one deliver_sm on session s; resolves with the resp status (or rejects on timeout/close). */
	_sendDeliver(s, fields, timeoutMs) {
		return new Promise((resolve, reject) => {
			const session = s.session;
			const pdu = new PDU('deliver_sm', fields);
			let timer = null;
			const ok = session.send(pdu, (resp) => {
				if (timer) clearTimeout(timer);
				if (!resp) { reject(new Error('session closed before deliver_sm_resp')); return; }
				const st = resp.command_status;
				this.counters.delivered++;
				this.counters.deliverResps[st] = (this.counters.deliverResps[st] || 0) + 1;
				if (this.listenerCount('deliver_resp')) this.emit('deliver_resp', { status: st, seq: resp.sequence_number });
				resolve(st);
			});
			if (!ok) { reject(new Error('session not writable')); return; }
			const seq = pdu.sequence_number;
			timer = setTimeout(() => {
				delete session._callbacks[seq];
				reject(new Error(`no deliver_sm_resp within ${timeoutMs} ms (seq ${seq})`));
			}, timeoutMs);
		});
	}

	async _waitRx(timeoutMs, sessionIndex) {
		const deadline = Date.now() + timeoutMs;
		for (;;) {
			let s = null;
			if (sessionIndex != null) {
				for (const x of this.sessions) if (x.bindIndex === sessionIndex && x.bound && !x.closed) s = x;
			} else {
				s = this._pickRx(null);
			}
			if (s && !this.silent) return s;
			if (Date.now() >= deadline) throw new Error('SmscSim: no bound receiver/transceiver session');
			await sleep(10);
		}
	}

	/* ------------------------------------------------------------ MO */

	/*
	 * deliver({from, to, text, dataCoding, parts: undefined|'udh8'|'udh16'|'sar'|'payload', partSize, order,
	 *          receiptedId, messageState, esmClass, ussdServiceOp, itsSessionInfo, umr, serviceType,
	 *          shortMessage (raw Buffer), extra (more node-smpp fields/TLVs), timeoutMs, session})
	 * Sends one deliver_sm per part (parts in `order`, 1-based, pipelined) and resolves with the
	 * deliver_sm_resp status, or an array of statuses indexed by part number - 1.
	 */
	async deliver(m) {
		const o = this.opts;
		const timeoutMs = m.timeoutMs || o.deliverTimeoutMs;
		const text = m.text == null ? '' : String(m.text);
		let dc = m.dataCoding;
		if (dc == null) dc = gsmFits(text) ? 0 : 8;
		const base = {
			service_type: m.serviceType != null ? m.serviceType : (m.ussdServiceOp != null && o.ussdMode ? 'USSD' : ''),
			source_addr_ton: m.sourceTon != null ? m.sourceTon : 1,
			source_addr_npi: m.sourceNpi != null ? m.sourceNpi : 1,
			source_addr: m.from || '84912345678',
			dest_addr_ton: m.destTon != null ? m.destTon : 0,
			dest_addr_npi: m.destNpi != null ? m.destNpi : 0,
			destination_addr: m.to || '8079',
			esm_class: m.esmClass || 0,
			registered_delivery: 0,
			data_coding: dc,
		};
		if (m.receiptedId != null) base.receipted_message_id = String(m.receiptedId);
		if (m.messageState != null) base.message_state = m.messageState;
		if (m.ussdServiceOp != null) base.ussd_service_op = m.ussdServiceOp;
		if (m.itsSessionInfo != null) {
			base.its_session_info = Buffer.isBuffer(m.itsSessionInfo) ? m.itsSessionInfo : u16(m.itsSessionInfo);
		}
		if (m.umr != null) base.user_message_reference = m.umr;
		if (m.extra) Object.assign(base, m.extra);

		const pdus = [];
		if (m.shortMessage) {
			pdus.push(Object.assign({}, base, { short_message: m.shortMessage }));
		} else if (!m.parts) {
			pdus.push(Object.assign({}, base, { short_message: encodeText(text, dc) }));
		} else if (m.parts === 'payload') {
			pdus.push(Object.assign({}, base, { short_message: Buffer.alloc(0), message_payload: encodeText(text, dc) }));
		} else {
			const alpha = alphabetOf(dc);
			const unit = alpha === 'ucs2' ? 2 : 1;
			const udhLen = m.parts === 'udh8' ? 6 : m.parts === 'udh16' ? 7 : 0;
			const dflt = alpha === 'gsm' ? (m.parts === 'udh16' ? 152 : 153) : alpha === 'ucs2' ? (m.parts === 'udh16' ? 66 : 67) : 140 - udhLen;
			const maxBytes = (m.partSize || dflt) * unit;
			const segs = splitEncoded(text, dc, maxBytes);
			const total = segs.length;
			const ref = m.ref != null ? m.ref : (this._ref = (this._ref + 1) & 0xffff);
			segs.forEach((seg, i) => {
				const f = Object.assign({}, base);
				if (m.parts === 'sar') {
					f.short_message = seg;
					f.sar_msg_ref_num = ref & 0xffff;
					f.sar_total_segments = total;
					f.sar_segment_seqnum = i + 1;
				} else {
					const udh = m.parts === 'udh16'
						? Buffer.from([6, 8, 4, (ref >> 8) & 0xff, ref & 0xff, total, i + 1])
						: Buffer.from([5, 0, 3, ref & 0xff, total, i + 1]);
					f.short_message = Buffer.concat([udh, seg]);
					f.esm_class = (f.esm_class | 0x40);
				}
				pdus.push(f);
			});
		}
		const order = m.order && m.order.length === pdus.length ? m.order : pdus.map((_, i) => i + 1);
		const s = await this._waitRx(timeoutMs, m.session);
		const proms = new Array(pdus.length);
		for (const k of order) proms[k - 1] = this._sendDeliver(s, pdus[k - 1], timeoutMs);
		const st = await Promise.all(proms);
		return st.length === 1 ? st[0] : st;
	}

	/*
	 * Write raw bytes to a bound session (receiver/transceiver preferred, else any) and resolve with the
	 * next PDU the ESME sends: {command_length, command_id, command_status, sequence_number, command, raw},
	 * or null when nothing arrives within timeoutMs (default 2000).
	 */
	async deliverRaw(buf, timeoutMs = 2000, sessionIndex) {
		let s = null;
		try {
			s = await this._waitRx(Math.min(timeoutMs, 5000), sessionIndex);
		} catch (e) {
			for (const x of this.sessions) if (x.bound && !x.closed) s = x;
			if (!s) for (const x of this.sessions) if (!x.closed) s = x;
			if (!s) throw e;
		}
		return new Promise((resolve) => {
			let timer = null;
			const done = (v) => {
				if (timer) clearTimeout(timer);
				if (s.waitNext === fn) s.waitNext = null;
				s.socket.removeListener('close', onClose);
				resolve(v);
			};
			const fn = (pdu) => done({
				command_length: pdu.command_length, command_id: pdu.command_id,
				command_status: pdu.command_status, sequence_number: pdu.sequence_number,
				command: pdu.command, raw: pdu._raw,
			});
			const onClose = () => done(null);
			s.waitNext = fn;
			s.socket.once('close', onClose);
			timer = setTimeout(() => done(null), timeoutMs);
			s.socket.write(buf);
		});
	}

	/* ------------------------------------------------------------ USSD */

	/* Begin a USSD dialogue: deliver_sm with ussd_service_op 1 (PSSR indication) and its_session_info. */
	async ussdBegin(m) {
		let sn = m.sessionNumber;
		if (sn == null) {
			sn = this._ussdNext;
			this._ussdNext = (this._ussdNext % 255) + 1;
		}
		const code = m.serviceCode || m.text || '*8079#';
		const its = (sn & 0xff) << 8;
		this.ussdSessions.set(sn, { from: m.from, serviceCode: code, to: m.to || code, its, open: true, lastOp: null });
		const st = await this.deliver({
			from: m.from, to: m.to || code, text: code, dataCoding: m.dataCoding != null ? m.dataCoding : 0,
			ussdServiceOp: m.op != null ? m.op : 1, itsSessionInfo: its, umr: m.umr,
			serviceType: m.serviceType != null ? m.serviceType : 'USSD', timeoutMs: m.timeoutMs,
		});
		return { session: sn, status: st };
	}

	/* Answer in an open dialogue: deliver_sm op 18 (USSR confirm), echoing the session's last its_session_info. */
	async ussdAnswer(m) {
		const sn = m.sessionNumber != null ? m.sessionNumber : m.session;
		const u = this.ussdSessions.get(sn) || { from: m.from, serviceCode: '*8079#', to: m.to || '*8079#', its: (sn & 0xff) << 8 };
		const st = await this.deliver({
			from: m.from || u.from, to: m.to || u.to, text: m.text, dataCoding: m.dataCoding,
			ussdServiceOp: m.op != null ? m.op : 18, itsSessionInfo: u.its & ~1, umr: m.umr,
			serviceType: m.serviceType != null ? m.serviceType : 'USSD', timeoutMs: m.timeoutMs,
		});
		return { session: sn, status: st };
	}

	_ussdTrack(sub) {
		const sn = sub.itsSessionInfo != null ? sub.itsSessionInfo >> 8 : null;
		if (sn == null) return;
		const u = this.ussdSessions.get(sn);
		if (!u) return;
		u.its = sub.itsSessionInfo;
		u.lastOp = sub.ussdServiceOp;
		if (sub.ussdEnd) u.open = false;
	}
}

function gsmEncodeBuf(text) { return encodeText(text, 0); }

module.exports = {
	SmscSim, gsmDecode, gsmEncode: gsmEncodeBuf, decodeText, encodeText, splitEncoded, alphabetOf,
	parseUdhConcat, CMD, ST, TLV, DEFAULTS,
};
