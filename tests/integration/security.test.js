'use strict';
// Security and hostile input (issue 11, points 2 and 5): SMPP TLS refusing
// expired, wrong-host and untrusted certificates; HTTPS; hostile HTTP
// requests (bad JSON, bad UTF-8, huge and just-under-the-limit bodies,
// slowloris, unknown methods, path traversal); hostile CSV (broken quoting,
// Latin-1, BOM, CRLF); tokens never logged, phone numbers masked, and the
// warning for a world-readable configuration file holding a password.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const https = require('node:https');
const { execFileSync } = require('node:child_process');
const h = require('./lib/harness');

const HDR = 'household_code,province_code,district_code,commune_code,village,msisdn,language';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Known gaps, reported as TODO (not failures) until fixed; see the issue 11 report.
const SMPP_TLS_WHY_TODO = false; // smpp_session.c logs the X509 verify reason

const { withEnv } = h;

const { call } = h;

async function makeToken(env, role, name) {
  const r = await env.skillctl(['token', 'create', '--role', role, '--name', name || role]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

// Sends raw bytes on a fresh connection; resolves with everything the server
// wrote before closing (or before timeoutMs), and whether it closed.
function rawRequest(port, bytes, timeoutMs = 5000) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks = [];
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ text, status: m ? Number(m[1]) : 0, closed });
    };
    const t = setTimeout(() => finish(false), timeoutMs);
    s.on('data', (d) => {
      chunks.push(d);
      // one response is all we want: stop once a complete one is in
      const text = Buffer.concat(chunks).toString('latin1');
      const i = text.indexOf('\r\n\r\n');
      if (i >= 0) {
        const cl = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, i));
        if (cl && text.length - i - 4 >= Number(cl[1])) finish(false);
      }
    });
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
    s.write(bytes);
  });
}

// ---------------------------------------------------------------- SMPP TLS

// One CA, and server certificates made with openssl: good (IP and DNS name),
// expired (openssl ca with a start and end date in the past), wrong host
// (IP and DNS name), and self-signed (right name, but no CA behind it).
function makeCerts(dir) {
  const o = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=skillgate security test CA']);
  fs.mkdirSync(path.join(dir, 'newcerts'));
  fs.writeFileSync(path.join(dir, 'index.txt'), '');
  fs.writeFileSync(path.join(dir, 'serial'), '1000\n');
  fs.writeFileSync(path.join(dir, 'ca.cnf'), [
    '[ ca ]', 'default_ca = sg', '[ sg ]', `dir = ${dir}`, 'database = $dir/index.txt',
    'new_certs_dir = $dir/newcerts', 'serial = $dir/serial', 'default_md = sha256',
    'policy = any', 'unique_subject = no', 'copy_extensions = none', '[ any ]', 'commonName = supplied', '',
  ].join('\n'));
  const leaf = (name, cn, san, { start, end } = {}) => {
    o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
    fs.writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    if (start) {
      o(['ca', '-batch', '-config', 'ca.cnf', '-cert', 'ca.pem', '-keyfile', 'ca.key', '-in', `${name}.csr`,
        '-out', `${name}.pem`, '-startdate', start, '-enddate', end, '-extfile', `${name}.ext`, '-notext']);
    } else {
      o(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
        '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`]);
    }
    return { key: fs.readFileSync(path.join(dir, `${name}.key`)), cert: fs.readFileSync(path.join(dir, `${name}.pem`)) };
  };
  const certs = {
    ca: path.join(dir, 'ca.pem'),
    goodIp: leaf('good-ip', '127.0.0.1', 'IP:127.0.0.1'),
    goodName: leaf('good-name', 'localhost', 'DNS:localhost'),
    expired: leaf('expired', '127.0.0.1', 'IP:127.0.0.1', { start: '20200101000000Z', end: '20200102000000Z' }),
    wrongIp: leaf('wrong-ip', 'smsc.example.net', 'DNS:smsc.example.net,IP:10.9.8.7'),
    wrongName: leaf('wrong-name', 'smsc.example.net', 'DNS:smsc.example.net'),
    notYet: leaf('not-yet', '127.0.0.1', 'IP:127.0.0.1', { start: '20990101000000Z', end: '20990102000000Z' }),
  };
  o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'self.key', '-out', 'self.pem', '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  certs.selfSigned = { key: fs.readFileSync(path.join(dir, 'self.key')), cert: fs.readFileSync(path.join(dir, 'self.pem')) };
  // the expired one really is expired, and apart from that chains to the CA
  const verify = (args) => {
    try { execFileSync('openssl', ['verify', '-CAfile', 'ca.pem', ...args], { cwd: dir, stdio: 'pipe' }); return true; } catch { return false; }
  };
  assert.equal(verify(['expired.pem']), false, 'openssl verify refuses the expired certificate');
  assert.equal(verify(['-no_check_time', 'expired.pem']), true, 'its chain is fine');
  assert.equal(verify(['good-ip.pem']), true);
  return certs;
}

test('SMPP TLS: expired, wrong-host and self-signed server certificates are refused; the daemon stays up', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sgsec-'));
  try {
    const c = makeCerts(dir);
    const link = (tls, conf = {}) => ({ sim: { tls }, conf: { tls: 'yes', tls_ca_file: c.ca, reconnect_min: 1, reconnect_max: 1, ...conf } });
    let code = 9990;
    const other = (tls, conf = {}) => link(tls, { default_route: 'no', short_codes: String(++code), ussd_codes: `*${code}#`, ...conf });
    const refused = ['expired', 'wrongip', 'wrongname', 'selfsigned'];
    await withEnv({
      links: {
        goodip: link(c.goodIp),
        goodname: other(c.goodName, { host: 'localhost' }),
        expired: other(c.expired),
        wrongip: other(c.wrongIp),
        wrongname: other(c.wrongName, { host: 'localhost' }),
        selfsigned: other(c.selfSigned),
      },
      daemon: false,
    }, async (env) => {
      const d = await env.startDaemon({ waitBind: false });
      for (const n of ['goodip', 'goodname']) {
        await env.sims[n].waitFor(() => env.sims[n].boundCount() === 1, 10000, `the TLS bind on ${n}`);
      }
      for (const n of refused) {
        await env.waitFor(() => new RegExp(`${n}/trx: TLS: .*certificate verify failed`).test(env.log()), 10000,
          `the refused certificate on ${n}`);
        await env.waitFor(() => (env.log().match(new RegExp(`${n}/trx: connecting -> waiting`, 'g')) || []).length >= 2,
          10000, `a second attempt on ${n}`);
      }
      for (const n of refused) {
        assert.equal(env.sims[n].counters.binds, 0, `${n}: no bind over an unverified connection`);
        assert.equal(env.sims[n].binds.length, 0, `${n}: no bind`);
        assert.equal(env.sims[n].counters.bindFailures, 0, `${n}: no bind_* PDU (credentials) ever sent`);
      }
      // why, in words an operator can act on. TODO until gateway/smpp_session.c's
      // tls_log_error() also logs X509_verify_cert_error_string(SSL_get_verify_result())
      // (today it logs only "certificate verify failed"); then drop the todo.
      await t.test('the log says why each certificate was refused', { todo: SMPP_TLS_WHY_TODO }, () => {
        const why = {
          expired: /certificate has expired/,
          wrongip: /IP address mismatch/i,
          wrongname: /hostname mismatch/i,
          selfsigned: /self[- ]signed certificate/,
        };
        for (const n of refused) {
          const lines = env.log().split('\n').filter((l) => l.includes(`${n}/trx`)).join('\n');
          assert.match(lines, why[n], `${n}: the log says why\n${lines.slice(0, 600)}`);
        }
      });
      assert.equal(d.exited, null, 'the daemon stays up');
      assert.ok(!env.log().includes('secret'), 'the bind password is never logged');
      // and the trusted links carry traffic meanwhile
      const [mt] = await env.sql("INSERT INTO mt_messages (msisdn, text, kind, priority) VALUES ('84961234567', 'over TLS', 'api', 0) RETURNING id");
      await env.waitFor(async () => (await env.sql('SELECT state FROM mt_messages WHERE id = $1', [mt.id]))[0].state === 'delivered',
        15000, 'an MT over the verified TLS link');
      assert.equal(env.sims.goodip.boundCount() + env.sims.goodname.boundCount(), 2);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------- HTTPS

test('HTTPS: served with the configured certificate, plain HTTP on the TLS port gets nothing', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sgsec-'));
  const cert = path.join(dir, 'cert.pem'), key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  try {
    await withEnv({ http: true, daemon: false, conf: { http: { tls_cert: cert, tls_key: key, timeout: 2 } } }, async (env) => {
      const base = env.http.replace('http:', 'https:');
      const port = env.httpPort;
      env.http = null; // the harness probes plain HTTP
      const d = await env.startDaemon();
      const ca = fs.readFileSync(cert);
      const get = (p, o = {}) => new Promise((resolve, reject) => {
        https.get(base + p, { ca, ...o }, (res) => {
          const peer = res.socket.getPeerCertificate();
          let b = '';
          res.on('data', (x) => { b += x; });
          res.on('end', () => resolve({ status: res.statusCode, body: b, cert: peer }));
        }).on('error', reject);
      });
      const hz = await h.waitFor(() => get('/healthz').catch(() => null), 10000, 'HTTPS');
      assert.equal(hz.status, 200);
      assert.equal(hz.cert.subject.CN, 'localhost', 'the configured certificate is the one served');
      // a client that does not trust that certificate refuses the connection (nothing served unverified)
      await assert.rejects(get('/healthz', { ca: undefined }), /self[- ]signed|unable to verify/i);
      // plain HTTP on the TLS port: no HTTP answer, the connection is closed
      const plain = await rawRequest(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 5000);
      assert.equal(plain.status, 0, `no HTTP reply in plain text: ${JSON.stringify(plain.text.slice(0, 80))}`);
      assert.ok(plain.closed, 'the server closes the connection');
      assert.ok(!plain.text.includes('"database"'));
      const viaFetch = await fetch(`http://127.0.0.1:${port}/healthz`).then((x) => x.status, () => 0);
      assert.notEqual(viaFetch, 200);
      // still serving HTTPS afterwards
      assert.equal((await get('/healthz')).status, 200);
      assert.equal(d.exited, null);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('HTTPS certificate checks: expired, not yet valid, mismatched key refused at start; self-signed warned; clients reject a wrong host', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sgsec-'));
  try {
    const c = makeCerts(dir);
    const pem = (n) => path.join(dir, `${n}.pem`);
    const key = (n) => path.join(dir, `${n}.key`);
    await withEnv({ http: true, daemon: false, links: {}, conf: { http: { timeout: 2 } } }, async (env) => {
      const port = env.httpPort;
      env.http = null; // the harness probes plain HTTP
      const base = fs.readFileSync(env.confPath, 'utf8');
      assert.match(base, /^\[http\]$/m);
      let n = 0;
      const conf = (cert, k) => {
        const p = path.join(env.dir, `tls-${++n}.conf`);
        fs.writeFileSync(p, base.replace(/^\[http\]$/m, `[http]\ntls_cert = ${cert}\ntls_key = ${k}`), { mode: 0o600 });
        return p;
      };
      const refused = async (cert, k, why) => {
        await assert.rejects(env.startDaemon({ confPath: conf(cert, k) }), /exited at start/, why.source);
        const d = env.daemons[env.daemons.length - 1];
        assert.notEqual(d.exited.code, 0, 'a non-zero exit');
        await env.waitFor(() => why.test(d.log), 3000, `the reason in the log: ${why.source}\n${d.log}`);
        assert.match(d.log, /cannot start the HTTP server/);
      };
      await refused(pem('expired'), key('expired'), /TLS certificate \S+expired\.pem refused: the certificate has expired \(notAfter Jan  2 00:00:00 2020 GMT\)/);
      await refused(pem('not-yet'), key('not-yet'), /TLS certificate \S+not-yet\.pem refused: the certificate is not yet valid \(notBefore Jan  1 00:00:00 2099 GMT\)/);
      await refused(pem('good-ip'), key('good-name'), /refused: the private key \S+good-name\.key does not match the certificate/);
      await refused(path.join(dir, 'missing.pem'), key('good-ip'), /refused: cannot load the certificate/);
      // skillgated -t (configuration check) reports the same refusal without starting
      const chk = await h.run(path.join(h.BIN, 'skillgated'), ['-t', '-c', conf(pem('expired'), key('expired'))]);
      assert.notEqual(chk.code, 0, 'skillgated -t fails on the expired certificate');
      assert.match(chk.stdout + chk.stderr, /tls_cert.*the certificate has expired/);
      const good = await h.run(path.join(h.BIN, 'skillgated'), ['-t', '-c', conf(pem('good-ip'), key('good-ip'))]);
      assert.equal(good.code, 0, `skillgated -t accepts the valid certificate: ${good.stdout}${good.stderr}`);

      const get = (o = {}) => new Promise((resolve, reject) => {
        https.get({ host: '127.0.0.1', port, path: '/healthz', agent: false, rejectUnauthorized: true, ...o }, (res) => {
          let b = '';
          res.on('data', (x) => { b += x; });
          res.on('end', () => resolve({ status: res.statusCode, body: b }));
        }).on('error', reject);
      });
      // self-signed: served, with a warning at start
      let d = await env.startDaemon({ confPath: conf(path.join(dir, 'self.pem'), path.join(dir, 'self.key')) });
      await env.waitFor(() => /listening on/.test(d.log), 5000, 'HTTPS up');
      assert.match(d.log, /TLS certificate \S+self\.pem is self-signed/);
      assert.equal((await h.waitFor(() => get({ ca: c.selfSigned.cert }).catch(() => null), 10000, 'HTTPS')).status, 200);
      await env.stopDaemon();
      // a CA-issued certificate for 127.0.0.1: a verifying client with the CA connects, no warning
      d = await env.startDaemon({ confPath: conf(pem('good-ip'), key('good-ip')) });
      const ca = fs.readFileSync(c.ca);
      const ok = await h.waitFor(() => get({ ca }).catch(() => null), 10000, 'HTTPS with the CA');
      assert.equal(ok.status, 200);
      assert.match(ok.body, /"database"/);
      assert.doesNotMatch(d.log, /self-signed|refused/);
      // a client checking another host name refuses the same certificate (wrong host)
      await assert.rejects(get({ ca, servername: 'wrong.example.net' }), (e) => e.code === 'ERR_TLS_CERT_ALTNAME_INVALID');
      // and one without the CA refuses it as untrusted
      await assert.rejects(get({}), /unable to (get local issuer|verify)/i);
      assert.equal((await get({ ca })).status, 200, 'still serving');
      assert.equal(d.exited, null);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------- hostile HTTP

test('hostile HTTP input', async (t) => {
  const MAX = 65536;
  await withEnv({
    http: true, logLevel: 'debug',
    conf: { http: { max_body: MAX, timeout: 2 }, database: { dedupe_window: 0 }, content: { loop_max: 1, loop_window: 300 } },
  }, async (env) => {
    const tokens = [];
    const tok = {};
    for (const role of ['admin', 'staff', 'partner', 'viewer']) {
      tok[role] = await makeToken(env, role);
      tokens.push(tok[role]);
    }
    const port = env.httpPort;
    const alive = async () => assert.equal((await call(env, 'GET', '/healthz')).status, 200, 'the daemon still answers');

    await t.test('bad JSON: 400 bad_json, never a crash', async () => {
      const bodies = ['', '{', '{"name": ', 'null', '[1,', '{"a":1}garbage', '{"a":1,}', "{'a':1}", '{"a":NaN}',
        '{"a":"\\x41"}', '"\\u0000"', '{"text":"\\u0000"}', '\u0000', '['.repeat(60000), '{"a":'.repeat(10000)];
      for (const ep of ['/api/v1/broadcasts', '/api/v1/messages']) {
        const token = ep.endsWith('messages') ? tok.partner : tok.staff;
        for (const b of bodies) {
          const r = await call(env, 'POST', ep, { token, body: b, type: 'application/json' });
          assert.ok(r.status === 400 || r.status === 422, `${ep} ${JSON.stringify(b.slice(0, 30))}: ${r.status} ${r.text}`);
          assert.ok(r.json && typeof r.json.error === 'string', 'a JSON error body');
          if (r.status === 400) assert.equal(r.json.error, 'bad_json');
        }
        // valid JSON of the wrong shape: 422 (bare scalars are not JSON texts to jansson: 400)
        for (const b of ['[]', '{}', '[{"to":"0912000009","text":"x"}]', '1', '"x"', 'true']) {
          const r = await call(env, 'POST', ep, { token, body: b });
          if (b.startsWith('[') || b.startsWith('{')) {
            assert.equal(r.status, 422, `${ep} ${b}: ${r.text}`);
            assert.equal(r.json.error, 'invalid');
          } else {
            assert.ok(r.status === 400 || r.status === 422, `${ep} ${b}: ${r.text}`);
          }
        }
      }
      await alive();
    });

    await t.test('invalid UTF-8 inside JSON strings: 400, nothing stored', async () => {
      const bad = [
        Buffer.from([0xff, 0xfe]), Buffer.from([0xc0, 0xaf]), Buffer.from([0xed, 0xa0, 0x80]),
        Buffer.from([0xe1, 0xba]), Buffer.from('Xin ch\xe0o', 'latin1'), Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80]),
      ];
      for (const b of bad) {
        const msg = Buffer.concat([Buffer.from('{"to":"0912000009","text":"'), b, Buffer.from('"}')]);
        let r = await call(env, 'POST', '/api/v1/messages', { token: tok.partner, body: msg });
        assert.equal(r.status, 400, `${b.toString('hex')}: ${r.text}`);
        assert.equal(r.json.error, 'bad_json');
        const bc = Buffer.concat([Buffer.from('{"name":"'), b, Buffer.from('","text":{"vi":"x"}}')]);
        r = await call(env, 'POST', '/api/v1/broadcasts', { token: tok.staff, body: bc });
        assert.equal(r.status, 400, `${b.toString('hex')}: ${r.text}`);
      }
      // a lone surrogate escape is refused too
      const r = await call(env, 'POST', '/api/v1/messages', { token: tok.partner, body: '{"to":"0912000009","text":"\\ud800"}' });
      assert.equal(r.status, 400, r.text);
      assert.equal((await env.sql("SELECT count(*)::int n FROM mt_messages WHERE kind = 'api'"))[0].n, 0);
      assert.equal((await env.sql('SELECT count(*)::int n FROM broadcasts'))[0].n, 0);
    });

    await t.test('bodies: over max_body 413, exactly max_body accepted', async () => {
      const msg = '{"to":"0912000010","text":"at the limit","id":"limit-1"}';
      const exact = msg + ' '.repeat(MAX - msg.length);
      assert.equal(Buffer.byteLength(exact), MAX);
      let r = await call(env, 'POST', '/api/v1/messages', { token: tok.partner, body: exact });
      assert.equal(r.status, 202, `a body of exactly max_body is read and parsed: ${r.text}`);
      r = await call(env, 'POST', '/api/v1/messages', { token: tok.partner, body: exact + ' ' });
      assert.equal(r.status, 413, 'one byte over');
      // our JSON error, not libevent's HTML page
      assert.match(r.headers.get('content-type'), /^application\/json/, r.text.slice(0, 200));
      assert.equal(r.json && r.json.error, 'too_large', r.text.slice(0, 200));
      assert.match(r.json.detail, /max_body \(65536 bytes\)/);
      assert.equal(r.headers.get('connection'), 'close');
      await alive(); // the next request is served
      // the raw reply: a JSON body, Connection: close, no HTML
      const json413 = (x, what) => {
        assert.equal(x.status, 413, `${what}: ${x.text.slice(0, 200)}`);
        const [head, body] = x.text.split('\r\n\r\n');
        assert.match(head, /\r\ncontent-type: application\/json/i, `${what}: ${head}`);
        assert.match(head, /\r\nconnection: close/i, `${what}: ${head}`);
        assert.doesNotMatch(x.text, /<html/i, what);
        const j = JSON.parse(body);
        assert.equal(j.error, 'too_large', what);
        assert.equal(typeof j.detail, 'string', what);
      };
      // a huge announced body is refused from the headers alone, before any of it is read
      const big = await rawRequest(port, `POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok.partner}\r\n` +
        'Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{"to":', 5000);
      json413(big, 'Content-Length: 1000000000');
      await alive();
      // chunked: the limit holds too, with the same JSON 413
      const chunk = 'x'.repeat(32768);
      let chunked = `POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok.partner}\r\nTransfer-Encoding: chunked\r\n\r\n`;
      for (let i = 0; i < 4; i++) chunked += `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
      chunked += '0\r\n\r\n';
      const ch = await rawRequest(port, chunked, 5000);
      json413(ch, 'chunked over the limit');
      await alive();
      assert.match(env.log(), /request body over \[http\] max_body \(65536 bytes\): refused \(413\)/);
      // libevent's other errors are JSON too (a malformed header line: 400)
      const bad = await rawRequest(port, 'GET /healthz HTTP/1.1\r\nBad header\r\n\r\n', 4000);
      assert.equal(bad.status, 400, bad.text.slice(0, 200));
      assert.equal(JSON.parse(bad.text.split('\r\n\r\n')[1]).error, 'bad_request');
      // CSV import just under the limit: every row read
      const row = (i) => `HN-L${i},01,001,00001,x,,vi\n`;
      let csv = HDR + '\n';
      let i = 0;
      while (Buffer.byteLength(csv + row(i)) <= MAX) csv += row(i++);
      r = await call(env, 'POST', '/api/v1/households/import', { token: tok.staff, body: csv, type: 'text/csv' });
      assert.equal(r.status, 200, r.text.slice(0, 300));
      assert.equal(r.json.imported, i);
      assert.equal(r.json.rejected, 0);
      await alive();
    });

    await t.test('slowloris: a client sending headers a byte a second is cut off by [http] timeout; others are served', async () => {
      const s = net.connect(port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      const t0 = Date.now();
      let closedAt = 0;
      let got = '';
      s.on('data', (d) => { got += d.toString('latin1'); });
      s.on('close', () => { closedAt = Date.now(); });
      s.on('error', () => {});
      const headers = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'a'.repeat(40)}\r\n\r\n`;
      let k = 0;
      const drip = setInterval(() => { if (!s.destroyed && k < headers.length) s.write(headers[k++]); }, 1000);
      try {
        // meanwhile other clients are served promptly, again and again
        for (let n = 0; n < 5; n++) {
          const a = Date.now();
          const r = await call(env, 'GET', '/api/v1/broadcasts', { token: tok.viewer });
          assert.equal(r.status, 200);
          assert.ok(Date.now() - a < 1000, 'served without waiting for the slow client');
          await sleep(300);
        }
        await env.waitFor(() => closedAt > 0, 8000, 'the server to drop the slow client');
      } finally {
        clearInterval(drip);
        s.destroy();
      }
      const took = closedAt - t0;
      assert.ok(took <= 6000, `cut off after ${took} ms (timeout 2 s), ${k} bytes sent`);
      assert.ok(k < headers.length, 'before the request was complete');
      assert.ok(!/^HTTP\/1\.1 200/.test(got), 'never served');
      assert.ok(took >= 1500, `not before the deadline (${took} ms)`);
      // a 408 in our JSON on the way out (plain HTTP), and the event logged
      assert.match(got, /^HTTP\/1\.1 408 /, JSON.stringify(got.slice(0, 120)));
      assert.equal(JSON.parse(got.split('\r\n\r\n')[1]).error, 'request_timeout');
      assert.match(env.log(), /127\.0\.0\.1: request headers not complete after 2 s \(\d+ bytes\): closing \(slow client\)/);
      await alive();
    });

    await t.test('slowloris on a kept-alive connection: the next request is under the same deadline', async () => {
      const s = net.connect(port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      let got = '';
      let closedAt = 0;
      s.on('data', (d) => { got += d.toString('latin1'); });
      s.on('close', () => { closedAt = Date.now(); });
      s.on('error', () => {});
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      await env.waitFor(() => /"database"/.test(got), 3000, 'the first reply');
      const t0 = Date.now();
      const headers = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ${'a'.repeat(40)}\r\n\r\n`;
      let k = 0;
      const drip = setInterval(() => { if (!s.destroyed && k < headers.length) s.write(headers[k++]); }, 500);
      try {
        await env.waitFor(() => closedAt > 0, 8000, 'the server to drop the slow second request');
      } finally {
        clearInterval(drip);
        s.destroy();
      }
      assert.ok(closedAt - t0 <= 4000, `cut off after ${closedAt - t0} ms`);
      assert.ok(k < headers.length, 'before the second request was complete');
      assert.equal((got.match(/^HTTP\/1\.1 200/gm) || []).length, 1, 'only the first request was served');
    });

    await t.test('a body sent steadily for longer than [http] timeout is not cut (the deadline is for headers)', async () => {
      // a CSV import trickled over ~3.5 s (timeout 2 s): never idle, under max_body
      let csv = HDR + '\n';
      for (let i = 0; i < 800; i++) csv += `HN-S${i},01,001,00001,x,,vi\n`;
      const body = Buffer.from(csv);
      assert.ok(body.length < MAX);
      const s = net.connect(port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      let got = '';
      s.on('data', (d) => { got += d.toString('latin1'); });
      s.on('error', () => {});
      s.write(`POST /api/v1/households/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok.staff}\r\n` +
        `Content-Type: text/csv\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
      const t0 = Date.now();
      const parts = 14;
      const step = Math.ceil(body.length / parts);
      for (let i = 0; i < parts; i++) {
        await sleep(250);
        s.write(body.subarray(i * step, (i + 1) * step));
      }
      await env.waitFor(() => /\r\n\r\n\{.*\}/s.test(got), 5000, 'the import reply');
      s.destroy();
      assert.ok(Date.now() - t0 >= 3000, 'the body took longer than the timeout');
      assert.match(got, /^HTTP\/1\.1 200/, got.slice(0, 300));
      assert.equal(JSON.parse(got.split('\r\n\r\n')[1]).imported, 800);
    });

    await t.test('an idle connection that sends nothing is closed after [http] timeout', async () => {
      const t0 = Date.now();
      const r = await rawRequest(port, '', 8000);
      // closed, after a 408 JSON (the header deadline) or without a word
      assert.ok(r.closed || r.status === 408, `closed by the server: ${r.text.slice(0, 100)}`);
      assert.ok(Date.now() - t0 < 4000, 'within the timeout');
    });

    await t.test('unknown and unusual methods', async () => {
      for (const m of ['BREW', 'PROPFIND', 'TRACE', 'CONNECT', 'G\u00e9T', 'get']) {
        const r = await rawRequest(port, `${m} /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 4000);
        assert.ok([400, 405, 501].includes(r.status) || (r.status === 0 && r.closed), `${m}: ${r.text.slice(0, 100)}`);
      }
      for (const m of ['PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
        const r = await call(env, m, '/api/v1/broadcasts', { token: tok.admin });
        assert.equal(r.status, 405, `${m}: ${r.text}`);
        assert.equal(r.json.error, 'method_not_allowed');
        const u = await call(env, m, '/ussd', { token: tok.admin });
        assert.equal(u.status, 405);
      }
      // malformed request lines
      for (const line of ['GET\r\n\r\n', 'GET /healthz HTTP/9.9\r\n\r\n', '\r\n\r\n', 'GET /healthz HTTP/1.1\r\nBad header\r\n\r\n',
        `GET /${'a'.repeat(20000)} HTTP/1.1\r\nHost: x\r\n\r\n`, `GET /healthz HTTP/1.1\r\nX: ${'b'.repeat(20000)}\r\n\r\n`]) {
        const r = await rawRequest(port, line, 4000);
        assert.ok(r.status === 0 || (r.status >= 400 && r.status < 500), `${JSON.stringify(line.slice(0, 40))}: ${r.text.slice(0, 100)}`);
        assert.ok(!/"database"/.test(r.text), 'never the health report');
      }
      await alive();
    });

    await t.test('path traversal on the dashboard: 404/400, never file content', async () => {
      const passwd = fs.readFileSync('/etc/passwd', 'latin1').split('\n')[0];
      const schema = fs.readFileSync(path.join(h.ROOT, 'sql/001_schema.sql'), 'utf8').slice(0, 40);
      const paths = [
        '/dashboard/../../etc/passwd', '/dashboard/../../../../../../etc/passwd', '/dashboard/../sql/001_schema.sql',
        '/dashboard/%2e%2e/%2e%2e/etc/passwd', '/dashboard/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd', '/dashboard/..%2f..%2fetc%2fpasswd',
        '/dashboard/%252e%252e/%252e%252e/etc/passwd', '/dashboard/..%5c..%5cetc%5cpasswd', '/dashboard/..\\..\\etc\\passwd',
        '/dashboard/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd', '/dashboard/....//....//etc/passwd', '/dashboard//etc/passwd',
        '/dashboard/%2fetc%2fpasswd', '/dashboard/index.html/../../../etc/passwd', '/dashboard/%00../../etc/passwd',
        '/dashboard/index.html%00.js', '//etc/passwd', '/etc/passwd', '/../../etc/passwd', '/dashboard/./../Makefile',
        '/dashboard/.%2e/Makefile', '/dashboard/' + '../'.repeat(100) + 'etc/passwd',
      ];
      for (const p of paths) {
        const r = await rawRequest(port, `GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 4000);
        assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status} ${r.text.slice(0, 120)}`);
        assert.ok(!r.text.includes(passwd), `${p}: /etc/passwd content`);
        assert.ok(!r.text.includes(schema), `${p}: repository file content`);
        assert.ok(!r.text.includes('CC ?= cc') && !r.text.includes('root:x:0:0'), `${p}: file content`);
      }
      // the real dashboard still works
      assert.equal((await rawRequest(port, 'GET /dashboard/app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).status, 200);
    });

    await t.test('CSV import: broken quoting, Latin-1, BOM, CRLF -> per-row errors, valid rows kept', async () => {
      const lines = [
        Buffer.from('\ufeff' + HDR),                                        // 1: header after a UTF-8 BOM
        Buffer.from('HC-1,01,001,00001,Tổ 1,0912300001,vi'),               // 2 ok
        Buffer.from('HC-2,01,001,00001,"broken,0912300002,vi'),            // 3 open quote
        Buffer.from('HC-3,01,001,00001,T\xf4 3,0912300003,vi', 'latin1'),  // 4 Latin-1 byte
        Buffer.from('HC-4,01,001,00001,"Ngõ ""5"", Tổ 4",0912300004,en'),  // 5 ok, quoted with "" and a comma
        Buffer.from('HC-5,01,001,00001,"Tổ 5"x,0912300005,vi'),            // 6 text after a closing quote
        Buffer.from('HC-6,01,001,00001,Tổ "6",0912300006,vi'),             // 7 quote inside an unquoted field
        Buffer.from('HC-7,01,001,00001,"Tổ 7",0912300007,vi'),             // 8 ok
        Buffer.from([0x48, 0x43, 0x2d, 0x38, 0x2c, 0xff, 0xfe, 0x2c]),        // 9 garbage bytes
        Buffer.from('HC-9,01,001,00001,x,0912300009,vi'),                  // 10 ok, last line without a line end
      ];
      const body = Buffer.concat(lines.flatMap((l, i) => (i < lines.length - 1 ? [l, Buffer.from('\r\n')] : [l])));
      const r = await call(env, 'POST', '/api/v1/households/import', { token: tok.staff, body, type: 'text/csv' });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json.errors.map((e) => e.line), [3, 4, 6, 7, 9], r.text);
      assert.match(r.json.errors[0].error, /quot/);
      assert.match(r.json.errors[1].error, /UTF-8/);
      assert.equal(r.json.imported, 4);
      const rows = await env.sql("SELECT code, village FROM households WHERE code LIKE 'HC-%' ORDER BY code");
      assert.deepEqual(rows, [
        { code: 'HC-1', village: 'Tổ 1' }, { code: 'HC-4', village: 'Ngõ "5", Tổ 4' },
        { code: 'HC-7', village: 'Tổ 7' }, { code: 'HC-9', village: 'x' },
      ]);
      // a whole file in Latin-1: every row with a non-ASCII byte refused, the ASCII ones kept
      const latin1 = Buffer.from([HDR, 'HL-1,01,001,00001,Ng\xf5 1,0912300011,vi', 'HL-2,01,001,00001,plain,0912300012,vi',
        'HL-3,01,001,00001,T\xf4 3,0912300013,en'].join('\n') + '\n', 'latin1');
      const l1 = await call(env, 'POST', '/api/v1/households/import', { token: tok.staff, body: latin1, type: 'text/csv' });
      assert.equal(l1.status, 200, l1.text);
      assert.deepEqual(l1.json.errors.map((e) => [e.line, /UTF-8/.test(e.error)]), [[2, true], [4, true]]);
      assert.equal(l1.json.imported, 1);
      // a Latin-1 header is a file error (422), not a crash
      const badHdr = Buffer.from('household_c\xf4de,province_code\n', 'latin1');
      const bh = await call(env, 'POST', '/api/v1/households/import', { token: tok.staff, body: badHdr, type: 'text/csv' });
      assert.equal(bh.status, 422, bh.text);
      // only a BOM, only CRLFs, a UTF-16 file
      for (const b of [Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('\r\n\r\n\r\n'), Buffer.from('\ufeff' + HDR + '\r\n', 'utf16le')]) {
        const x = await call(env, 'POST', '/api/v1/households/import', { token: tok.staff, body: b, type: 'text/csv' });
        assert.ok(x.status === 422 || (x.status === 200 && x.json.imported === 0), `${b.toString('hex').slice(0, 20)}: ${x.text}`);
      }
      await alive();
    });

    await t.test('tokens are never logged, not even from a query string', async () => {
      const wrong = ['sgWRONGtoken0000000000000000000000000000001', 'sgWRONGtoken0000000000000000000000000000002'];
      await call(env, 'GET', '/api/v1/broadcasts', { token: wrong[0] });
      await fetch(`${env.http}/api/v1/broadcasts`, { headers: { Authorization: `Basic ${wrong[1]}` } });
      // a client that puts its token in the URL must not get it written to the log either
      await fetch(`${env.http}/api/v1/broadcasts?access_token=${tok.viewer}&token=${wrong[0]}`);
      await fetch(`${env.http}/ussd?token=${tok.partner}`, { method: 'POST', body: 'sessionId=1' });
      for (const tk of [...tokens, ...wrong]) {
        assert.ok(!env.log().includes(tk), `a token (${tk.slice(0, 4)}...) appears in the log`);
      }
      // the failures themselves are logged
      assert.match(env.log(), /authentication failed from 127\.0\.0\.1/);
      // the stored form is a hash, not the token
      const stored = await env.sql('SELECT encode(hash, \'hex\') h FROM api_tokens');
      for (const row of stored) for (const tk of tokens) assert.ok(!row.h.includes(Buffer.from(tk).toString('hex')));
    });

    await t.test('phone numbers are masked in the log', async () => {
      const mo = '84912345671';
      assert.equal(await env.sim.deliver({ from: mo, to: '8079', text: 'HELP' }), 0);
      await env.sim.waitFor(() => env.sim.messages().some((m) => m.to === mo), 10000, 'the reply to the MO');
      // the same text again: the loop guard (loop_max 1) logs the number, masked
      assert.equal(await env.sim.deliver({ from: mo, to: '8079', text: 'HELP' }), 0);
      await env.waitFor(() => /loop guard/.test(env.log()), 10000, 'the loop guard');
      const api = '84912345672';
      const r = await call(env, 'POST', '/api/v1/messages', { token: tok.partner, body: JSON.stringify({ to: '0912345672', text: 'hi' }) });
      assert.equal(r.status, 202, r.text);
      await env.waitFor(async () => (await env.sql("SELECT state FROM mt_messages WHERE msisdn = $1 AND state = 'delivered'", [api])).length === 1,
        15000, 'the API message delivered');
      await call(env, 'GET', `/api/v1/subscribers/${mo}`, { token: tok.viewer });
      await sleep(300);
      const log = env.log();
      for (const n of [mo, api, mo.slice(2), api.slice(2), `0${mo.slice(2)}`]) assert.ok(!log.includes(n), `${n} appears unmasked in the log`);
      assert.match(log, /loop guard: no reply to 84912\*\*\*671/, 'the number appears in its masked form');
    });
  });
});

// ---------------------------------------------------------------- secrets in the config file

test('a world-readable configuration file holding a password is warned about at start', async () => {
  await withEnv({ daemon: false }, async (env) => {
    fs.chmodSync(env.confPath, 0o644);
    assert.match(fs.readFileSync(env.confPath, 'utf8'), /password = secret/);
    await env.startDaemon();
    assert.match(env.log(), new RegExp(`${env.confPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is world-readable`));
    assert.ok(!env.log().includes('secret'), 'the password itself is not logged');
    await env.stopDaemon();
    // mode 0600: no warning
    fs.chmodSync(env.confPath, 0o600);
    const d = await env.startDaemon();
    assert.ok(!/world-readable/.test(d.log), d.log);
  });
});
