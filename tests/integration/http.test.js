'use strict';
// HTTP API (§4.1, §4.3): every endpoint and role, the error paths
// (400/401/403/404/405/413/422/429), household CSV import with broken rows,
// coverage against the database, TLS, and the matching skillctl commands.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const https = require('node:https');
const { execFileSync } = require('node:child_process');
const h = require('./lib/harness');

const HDR = 'household_code,province_code,district_code,commune_code,village,msisdn,language';

const { call } = h;

async function makeToken(env, role, name) {
  const r = await env.skillctl(['token', 'create', '--role', role, '--name', name || role]);
  assert.strictEqual(r.code, 0, r.stderr);
  const tok = r.stdout.trim();
  assert.match(tok, /^[A-Za-z0-9_-]{43}$/);
  return tok;
}

test('HTTP API', async (t) => {
  const env = await h.start({ http: true, conf: { http: { max_body: 65536 } } });
  const tok = {};
  try {
    for (const role of ['admin', 'staff', 'partner', 'viewer']) tok[role] = await makeToken(env, role);
    const stored = await env.sql('SELECT hash FROM api_tokens');
    assert.strictEqual(stored.length, 4);
    for (const row of stored) assert.strictEqual(row.hash.length, 32); // only SHA-256 is stored

    await t.test('healthz and metrics need no token', async () => {
      const hz = await call(env, 'GET', '/healthz');
      assert.strictEqual(hz.status, 200);
      assert.strictEqual(hz.json.database.up, true);
      assert.ok(Array.isArray(hz.json.links) && hz.json.links.length === 1);
      assert.strictEqual(hz.json.links[0].name, 'viettel');
      const m = await call(env, 'GET', '/metrics');
      assert.strictEqual(m.status, 200);
      assert.match(m.headers.get('content-type'), /text\/plain/);
      assert.match(m.text, /skillgate_messages_total\{direction="mo",state="received"\} \d+/);
      assert.match(m.text, /skillgate_link_up\{link="viettel"\} 1/);
      assert.match(m.text, /skillgate_db_roundtrip_seconds_bucket\{le="\+Inf"\} \d+/);
      assert.match(m.text, /skillgate_outbox_queued\{priority="0"\} \d+/);
      assert.strictEqual((await call(env, 'POST', '/healthz')).status, 405);
    });

    await t.test('authentication and roles', async () => {
      let r = await call(env, 'GET', '/api/v1/reports/coverage');
      assert.strictEqual(r.status, 401);
      assert.strictEqual(r.json.error, 'unauthorized');
      assert.ok('detail' in r.json);
      r = await call(env, 'GET', '/api/v1/reports/coverage', { token: 'not-a-token' });
      assert.strictEqual(r.status, 401);
      assert.ok(!env.log().includes('not-a-token'), 'the token must never be logged');
      r = await call(env, 'GET', '/api/v1/reports/coverage', { token: tok.viewer });
      assert.strictEqual(r.status, 200);
      r = await call(env, 'GET', '/api/v1/reports/coverage', { token: tok.partner });
      assert.strictEqual(r.status, 403);
      r = await call(env, 'POST', '/api/v1/households/import', { token: tok.viewer, body: HDR + '\n' });
      assert.strictEqual(r.status, 403);
      r = await call(env, 'POST', '/api/v1/broadcasts', { token: tok.partner, body: '{}' });
      assert.strictEqual(r.status, 403);
      r = await call(env, 'POST', '/api/v1/messages', { token: tok.viewer, body: '{}' });
      assert.strictEqual(r.status, 403);
      r = await call(env, 'GET', '/api/v1/subscribers/84912345678', { token: tok.admin });
      assert.strictEqual(r.status, 404);
      // a revoked token is refused
      const gone = await makeToken(env, 'viewer', 'temp');
      const id = (await env.sql("SELECT id FROM api_tokens WHERE name = 'temp'"))[0].id;
      const rv = await env.skillctl(['token', 'revoke', String(id)]);
      assert.strictEqual(rv.code, 0, rv.stderr);
      assert.strictEqual((await call(env, 'GET', '/api/v1/broadcasts', { token: gone })).status, 401);
      const ls = await env.skillctl(['token', 'list']);
      assert.match(ls.stdout, /temp\s+viewer/);
    });

    await t.test('unknown paths and methods', async () => {
      assert.strictEqual((await call(env, 'GET', '/api/v1/nothing', { token: tok.admin })).status, 404);
      const r = await call(env, 'DELETE', '/api/v1/broadcasts', { token: tok.admin });
      assert.strictEqual(r.status, 405);
      assert.strictEqual(r.json.error, 'method_not_allowed');
      assert.strictEqual((await call(env, 'GET', '/api/v1/broadcasts/999999', { token: tok.viewer })).status, 404);
      assert.strictEqual((await call(env, 'GET', '/api/v1/broadcasts/abc', { token: tok.viewer })).status, 404);
      assert.strictEqual((await call(env, 'POST', '/api/v1/broadcasts/999999/cancel', { token: tok.staff })).status, 404);
    });

    await t.test('household import with broken rows, idempotent', async () => {
      const csv = [
        HDR,
        'HN-1,01,001,00001,Tổ 1,0912000001,vi',
        'HN-1,01,001,00001,Tổ 1,0912000002,en',
        'HN-2,01,001,00004,"Ngõ 5, Tổ 2",,',
        'HN-3,01,001,0001,x,0912000003,vi', // bad commune code (line 5)
        'HN-4,01,001,00001,x,12ab,vi', // bad msisdn (line 6)
        'HN-5,01,001,00001,x,0912000004,fr', // bad language (line 7)
        'HN-6,01,001,00001,"broken,0912000005,vi', // broken quoting (line 8)
        'HN-7,01,001,00001,x,0912000006', // wrong column count (line 9)
        'HN-8,02,024,00001,x,0912000007,vi', // commune not in that district (line 10)
        'HN-9,01,001,00006,x,0912000001,vi', // phone already listed (line 11)
        'HN-10,79,760,26734,Phường,+84912000008,vi',
      ].join('\r\n') + '\r\n';
      const r = await call(env, 'POST', '/api/v1/households/import', { token: tok.staff, body: csv, type: 'text/csv' });
      assert.strictEqual(r.status, 200, r.text);
      assert.strictEqual(r.json.imported, 4);
      assert.strictEqual(r.json.households, 3);
      assert.strictEqual(r.json.phones, 3);
      assert.deepStrictEqual(r.json.errors.map((e) => e.line), [5, 6, 7, 8, 9, 10, 11]);
      assert.match(r.json.errors[0].error, /commune_code/);
      assert.match(r.json.errors[1].error, /msisdn/);
      assert.match(r.json.errors[2].error, /language/);
      assert.match(r.json.errors[3].error, /quot/);
      assert.match(r.json.errors[4].error, /columns/);
      assert.match(r.json.errors[5].error, /district/);
      assert.match(r.json.errors[6].error, /line 2/);
      const subs = await env.sql("SELECT s.msisdn, s.language, s.joined_via, h.code FROM subscribers s JOIN households h ON h.id = s.household_id ORDER BY 1");
      assert.deepStrictEqual(subs.map((s) => [s.msisdn, s.code, s.joined_via, s.language]), [
        ['84912000001', 'HN-1', 'import', 'vi'], ['84912000002', 'HN-1', 'import', 'en'], ['84912000008', 'HN-10', 'import', 'vi']]);
      const village = await env.sql("SELECT village FROM households WHERE code = 'HN-2'");
      assert.strictEqual(village[0].village, 'Ngõ 5, Tổ 2');
      // again: same outcome, nothing duplicated
      const before = await env.sql('SELECT (SELECT count(*) FROM households) h, (SELECT count(*) FROM subscribers) s');
      const r2 = await call(env, 'POST', '/api/v1/households/import', { token: tok.admin, body: csv });
      assert.strictEqual(r2.status, 200);
      assert.strictEqual(r2.json.imported, 4);
      const after = await env.sql('SELECT (SELECT count(*) FROM households) h, (SELECT count(*) FROM subscribers) s');
      assert.deepStrictEqual(after, before);
      // no header
      const bad = await call(env, 'POST', '/api/v1/households/import', { token: tok.staff, body: 'a,b\n1,2\n' });
      assert.strictEqual(bad.status, 422);
      assert.strictEqual(bad.json.error, 'invalid_csv');
    });

    await t.test('413 for bodies over max_body', async () => {
      const big = HDR + '\n' + 'HN-X,01,001,00001,x,,vi\n'.repeat(4000);
      const r = await call(env, 'POST', '/api/v1/households/import', { token: tok.staff, body: big });
      assert.strictEqual(r.status, 413);
      // our JSON error (not libevent's HTML page), and the connection is closed
      assert.match(r.headers.get('content-type'), /^application\/json/);
      assert.strictEqual(r.json.error, 'too_large');
      assert.match(r.json.detail, /max_body/);
      assert.strictEqual(r.headers.get('connection'), 'close');
      // nothing of it was imported, and the next request is served
      assert.strictEqual((await env.sql("SELECT count(*)::int n FROM households WHERE code = 'HN-X'"))[0].n, 0);
      assert.strictEqual((await call(env, 'GET', '/healthz')).status, 200);
    });

    await t.test('coverage report matches the database', async () => {
      // HN-1 phone 1 proficient in all five: HN-1 covered; HN-10 only payment
      await env.sql(`INSERT INTO proficiency (msisdn, skill, proficient)
                     SELECT '84912000001', code, true FROM skills`);
      await env.sql(`INSERT INTO proficiency (msisdn, skill, proficient) VALUES ('84912000008', 'payment', true),
                     ('84912000008', 'safety', false)`);
      let r = await call(env, 'GET', '/api/v1/reports/coverage?level=province', { token: tok.viewer });
      assert.strictEqual(r.status, 200);
      const byCode = Object.fromEntries(r.json.rows.map((x) => [x.code, x]));
      assert.strictEqual(byCode['01'].households, 2);
      assert.strictEqual(byCode['01'].covered, 1);
      assert.strictEqual(Number(byCode['01'].covered_pct), 50);
      assert.strictEqual(byCode['79'].households, 1);
      assert.strictEqual(byCode['79'].covered, 0);
      assert.strictEqual(Number(byCode['79'].skills.payment.pct), 100);
      assert.strictEqual(Number(byCode['79'].skills.safety.pct), 0);
      assert.strictEqual(byCode['02'].households, 0);
      // the same numbers computed directly from the stored flags
      const direct = await env.sql(`
        SELECT l.code, count(h.id)::int AS n,
               count(h.id) FILTER (WHERE EXISTS (SELECT 1 FROM subscribers s WHERE s.household_id = h.id AND
                 (SELECT count(*) FROM proficiency p WHERE p.msisdn = s.msisdn AND p.proficient) = 5))::int AS cov
          FROM localities l LEFT JOIN localities d ON d.parent_code = l.code
          LEFT JOIN localities c ON c.parent_code = d.code LEFT JOIN households h ON h.commune_code = c.code
         WHERE l.level = 'province' GROUP BY l.code ORDER BY l.code`);
      for (const d of direct) {
        assert.strictEqual(byCode[d.code].households, d.n, d.code);
        assert.strictEqual(byCode[d.code].covered, d.cov, d.code);
      }
      // drill down
      r = await call(env, 'GET', '/api/v1/reports/coverage?level=district&parent=01', { token: tok.viewer });
      assert.deepStrictEqual(r.json.rows.map((x) => x.code), ['001', '002']);
      assert.strictEqual(r.json.parent_name, 'Thành phố Hà Nội');
      r = await call(env, 'GET', '/api/v1/reports/coverage?level=commune&parent=001', { token: tok.viewer });
      assert.deepStrictEqual(r.json.rows.map((x) => [x.code, x.households, x.covered]),
        [['00001', 1, 1], ['00004', 1, 0], ['00006', 0, 0]]);
      // a member losing proficiency uncovers the household
      await env.sql("UPDATE proficiency SET proficient = false WHERE msisdn = '84912000001' AND skill = 'safety'");
      r = await call(env, 'GET', '/api/v1/reports/coverage?level=commune&parent=001', { token: tok.viewer });
      assert.strictEqual(r.json.rows[0].covered, 0);
      assert.strictEqual(Number(r.json.rows[0].skills.safety.pct), 0);
      await env.sql("UPDATE proficiency SET proficient = true WHERE msisdn = '84912000001' AND skill = 'safety'");
      assert.strictEqual((await call(env, 'GET', '/api/v1/reports/coverage?level=city', { token: tok.viewer })).status, 422);
      assert.strictEqual((await call(env, 'GET', '/api/v1/reports/coverage?level=district&parent=x1', { token: tok.viewer })).status, 422);
    });

    await t.test('subscriber view', async () => {
      const r = await call(env, 'GET', '/api/v1/subscribers/0912000001', { token: tok.viewer });
      assert.strictEqual(r.status, 200);
      assert.strictEqual(r.json.msisdn, '84912000001');
      assert.strictEqual(r.json.household, 'HN-1');
      assert.strictEqual(r.json.opted_out, false);
      assert.strictEqual(r.json.skills.payment.proficient, true);
      assert.deepStrictEqual(Object.keys(r.json.skills), ['public_services', 'shopping', 'payment', 'safety', 'platforms']);
      assert.strictEqual((await call(env, 'GET', '/api/v1/subscribers/12ab', { token: tok.viewer })).status, 422);
    });

    await t.test('broadcasts: create, show, list, cancel', async () => {
      const body = {
        name: 'Payment week', text: { vi: 'Nhắn HOC 3 gửi 8079.', en: 'Text QUIZ 3 to 8079.' },
        segment: { province: '01', missing_skills: ['payment'], language: 'vi', covered: false },
        start_at: '2099-10-01T08:00:00+07:00', end_at: '2099-10-10T20:00:00+07:00', rate: 50,
      };
      let r = await call(env, 'POST', '/api/v1/broadcasts', { token: tok.staff, body: JSON.stringify(body) });
      assert.strictEqual(r.status, 201, r.text);
      const id = r.json.id;
      const row = (await env.sql('SELECT * FROM broadcasts WHERE id = $1', [id]))[0];
      assert.strictEqual(row.state, 'scheduled');
      assert.strictEqual(row.text_vi, body.text.vi);
      assert.deepStrictEqual(row.segment, body.segment);
      assert.strictEqual(row.rate, 50);
      assert.strictEqual(row.created_by, 'staff');
      // validation
      const bad = [
        [{ ...body, name: '' }, /name/], [{ ...body, text: {} }, /text/],
        [{ ...body, segment: { province: '1' } }, /province/], [{ ...body, segment: { missing_skills: ['cooking'] } }, /skill/],
        [{ ...body, rate: -1 }, /rate/], [{ ...body, start_at: 'not a date' }, /./],
        [{ ...body, end_at: '2099-09-01T00:00:00Z' }, /end_at/],
      ];
      for (const [b, re] of bad) {
        r = await call(env, 'POST', '/api/v1/broadcasts', { token: tok.staff, body: JSON.stringify(b) });
        assert.strictEqual(r.status, 422, JSON.stringify(b) + ' ' + r.text);
        assert.match(r.json.detail, re);
      }
      r = await call(env, 'POST', '/api/v1/broadcasts', { token: tok.staff, body: '{"name": ' });
      assert.strictEqual(r.status, 400);
      assert.strictEqual(r.json.error, 'bad_json');
      // counts come from mt_messages
      // (the queued one is due tomorrow, so the daemon's pump leaves it queued for the cancel)
      await env.sql(`INSERT INTO mt_messages (msisdn, text, kind, priority, state, broadcast_id, next_attempt_at)
                     VALUES ('84912000001', 'x', 'broadcast', 1, 'queued', $1, now() + interval '1 day'),
                            ('84912000002', 'x', 'broadcast', 1, 'delivered', $1, now()),
                            ('84912000008', 'x', 'broadcast', 1, 'failed', $1, now())`, [id]);
      r = await call(env, 'GET', `/api/v1/broadcasts/${id}`, { token: tok.viewer });
      assert.strictEqual(r.status, 200);
      assert.deepStrictEqual(r.json.counts, { targeted: 3, queued: 1, submitted: 0, delivered: 1, failed: 1, cancelled: 0 });
      r = await call(env, 'GET', '/api/v1/broadcasts', { token: tok.viewer });
      assert.strictEqual(r.json.broadcasts[0].id, id);
      assert.strictEqual((await call(env, 'POST', `/api/v1/broadcasts/${id}/cancel`, { token: tok.viewer })).status, 403);
      r = await call(env, 'POST', `/api/v1/broadcasts/${id}/cancel`, { token: tok.staff });
      assert.strictEqual(r.status, 200, r.text);
      assert.strictEqual(r.json.cancelled_messages, 1);
      const states = await env.sql('SELECT state FROM mt_messages WHERE broadcast_id = $1 ORDER BY id', [id]);
      assert.deepStrictEqual(states.map((s) => s.state), ['cancelled', 'delivered', 'failed']);
      assert.strictEqual((await env.sql('SELECT state FROM broadcasts WHERE id = $1', [id]))[0].state, 'cancelled');
    });

    await t.test('single messages with client ids', async () => {
      const msg = { to: '0912000009', text: 'Xin chào', id: 'abc-1' };
      let r = await call(env, 'POST', '/api/v1/messages', { token: tok.partner, body: JSON.stringify(msg) });
      assert.strictEqual(r.status, 202, r.text);
      const mid = r.json.message_id;
      assert.strictEqual(r.json.to, '84912000009');
      const row = (await env.sql('SELECT kind, priority, msisdn FROM mt_messages WHERE id = $1', [mid]))[0];
      assert.deepStrictEqual(row, { kind: 'api', priority: 0, msisdn: '84912000009' });
      r = await call(env, 'POST', '/api/v1/messages', { token: tok.partner, body: JSON.stringify(msg) });
      assert.strictEqual(r.status, 200);
      assert.strictEqual(r.json.message_id, mid);
      assert.strictEqual(r.json.duplicate, true);
      r = await call(env, 'POST', '/api/v1/messages', { token: tok.partner, body: JSON.stringify({ ...msg, text: 'other' }) });
      assert.strictEqual(r.status, 409);
      assert.strictEqual((await env.sql("SELECT count(*)::int n FROM mt_messages WHERE kind = 'api'"))[0].n, 1);
      r = await call(env, 'POST', '/api/v1/messages', { token: tok.partner, body: JSON.stringify({ to: 'nope', text: 'x' }) });
      assert.strictEqual(r.status, 422);
      r = await call(env, 'POST', '/api/v1/messages', { token: tok.partner, body: JSON.stringify({ to: '0912000009', text: '' }) });
      assert.strictEqual(r.status, 422);
      r = await call(env, 'POST', '/api/v1/messages', { token: tok.partner, body: '[1,' });
      assert.strictEqual(r.status, 400);
      // the pipeline sends it
      await env.waitFor(async () => (await env.sql('SELECT state FROM mt_messages WHERE id = $1', [mid]))[0].state !== 'queued',
        15000, 'the API message to leave the queue');
    });

    await t.test('dashboard files, no traversal', async () => {
      let r = await call(env, 'GET', '/');
      assert.strictEqual(r.status, 200);
      assert.match(r.headers.get('content-type'), /text\/html/);
      r = await call(env, 'GET', '/dashboard/app.js');
      assert.strictEqual(r.status, 200);
      assert.match(r.headers.get('content-type'), /javascript/);
      for (const p of ['/dashboard/../sql/001_schema.sql', '/dashboard/%2e%2e/sql/001_schema.sql',
        '/dashboard/..%2fMakefile', '/dashboard/%2e%2e%2f%2e%2e%2fetc%2fpasswd', '/etc/passwd']) {
        const x = await call(env, 'GET', p);
        assert.strictEqual(x.status, 404, p);
      }
    });

    await t.test('skillctl commands', async () => {
      let r = await env.skillctl(['report', 'coverage', '--format', 'csv']);
      assert.strictEqual(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.match(lines[0], /^code,name,households,covered,covered_pct/);
      assert.match(lines[1], /^01,Thành phố Hà Nội,2,1,50\.0/);
      r = await env.skillctl(['report', 'coverage', '--level', 'commune', '--parent', '001', '--format', 'json']);
      assert.strictEqual(r.code, 0);
      assert.strictEqual(JSON.parse(r.stdout)[0].covered, 1);
      r = await env.skillctl(['report', 'coverage', '--level', 'district', '--parent', '01']);
      assert.match(r.stdout, /Quận Ba Đình/);
      const f = path.join(env.dir, 'hh.csv');
      fs.writeFileSync(f, `${HDR}\nHN-20,79,760,26737,x,0912000020,en\nHN-21,79,760,26737,x,bad,vi\n`);
      r = await env.skillctl(['import-households', f]);
      assert.strictEqual(r.code, 1);
      assert.match(r.stdout, /imported 1 rows: 1 households, 1 phones; 1 rows rejected/);
      assert.match(r.stderr, /line 3: msisdn/);
      r = await env.skillctl(['subscriber', '0912000020']);
      assert.strictEqual(r.code, 0);
      assert.match(r.stdout, /household\s+HN-20/);
      r = await env.skillctl(['status']);
      assert.strictEqual(r.code, 0, r.stderr);
      assert.match(r.stdout, /database\s+up/);
      assert.match(r.stdout, /link viettel/);
    });

    await t.test('failed authentications are rate limited', async () => {
      let last;
      for (let i = 0; i < 12; i++) last = await call(env, 'GET', '/api/v1/broadcasts', { token: `wrong${i}` });
      assert.strictEqual(last.status, 429);
      // even a good token waits while the address is limited
      assert.strictEqual((await call(env, 'GET', '/api/v1/broadcasts', { token: tok.admin })).status, 429);
      assert.ok(!/wrong\d/.test(env.log()), 'tokens are never logged');
      assert.strictEqual((await call(env, 'GET', '/healthz')).status, 200);
    });
  } finally {
    await env.stop();
  }
});

test('HTTPS when a certificate is configured', async () => {
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'sgtls-'));
  const cert = path.join(dir, 'cert.pem'), key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const env = await h.start({ http: true, daemon: false, conf: { http: { tls_cert: cert, tls_key: key } } });
  const base = env.http.replace('http:', 'https:');
  env.http = null; // the harness probes plain HTTP; we probe HTTPS ourselves
  try {
    await env.startDaemon();
    const ca = fs.readFileSync(cert);
    const get = (p, headers = {}) => new Promise((resolve, reject) => {
      https.get(base + p, { ca, headers }, (res) => {
        let b = '';
        res.on('data', (d) => { b += d; });
        res.on('end', () => resolve({ status: res.statusCode, body: b }));
      }).on('error', reject);
    });
    const hz = await h.waitFor(() => get('/healthz').catch(() => null), 10000, 'HTTPS');
    assert.strictEqual(hz.status, 200);
    assert.strictEqual(JSON.parse(hz.body).database.up, true);
    const tok = await makeToken(env, 'viewer');
    const r = await get('/api/v1/reports/coverage', { Authorization: `Bearer ${tok}` });
    assert.strictEqual(r.status, 200);
    assert.strictEqual(JSON.parse(r.body).rows.length, 3);
    assert.strictEqual((await get('/api/v1/reports/coverage')).status, 401);
    // plain HTTP on the TLS port gets nothing useful
    const plain = await fetch(base.replace('https:', 'http:') + '/healthz').then((x) => x.status, () => 0);
    assert.notStrictEqual(plain, 200);
    const st = await env.skillctl(['status']);
    assert.strictEqual(st.code, 0, st.stderr);
  } finally {
    await env.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
