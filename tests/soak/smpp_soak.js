'use strict';
// SMPP soak (issue 3, "done when"): skillgated against the node-smpp SMSC
// simulator for SOAK_SECONDS (default 600) while the SMSC drops every
// connection every DROP_SECONDS (default 30) and throttles 10 % of submits.
// Traffic: MT straight into the outbox (1-part GSM and 3-part Vietnamese
// UCS-2) at MT_RATE per second, and MO "HELP" at MO_RATE per second.
// At the end every MT must be delivered (none lost), every acknowledged MO
// must be in mo_messages, the daemon's RSS is reported, and the daemon must
// stop cleanly (exit 0: with an ASan build, LeakSanitizer would fail it).
//
//   node tests/soak/smpp_soak.js                 # own PostgreSQL, bin/
//   SG_BIN=/tmp/asan/bin SOAK_SECONDS=120 node tests/soak/smpp_soak.js
// Not part of `make test`. Prints one JSON line of figures; exit 1 on loss.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '../..');
const SECONDS = Number(process.env.SOAK_SECONDS || 600);
const DROP = Number(process.env.DROP_SECONDS || 30);
const MT_RATE = Number(process.env.MT_RATE || 40);
const MO_RATE = Number(process.env.MO_RATE || 4);

let pgdir = null;
if (!process.env.SG_PG_PORT) {
  pgdir = fs.mkdtempSync(path.join(os.tmpdir(), 'sgsoakpg-'));
  fs.chmodSync(pgdir, 0o755);
  const port = 20000 + Math.floor(Math.random() * 20000);
  execFileSync('bash', [path.join(ROOT, 'scripts/pg.sh'), 'start', pgdir, String(port)], { stdio: 'inherit' });
  process.env.SG_PG_PORT = String(port);
}
const h = require('../integration/lib/harness');

const VI = 'Xin chào! Hôm nay bạn sẽ học cách thanh toán an toàn bằng điện thoại. ' +
  'Đừng chia sẻ mã OTP với bất kỳ ai, kể cả người tự xưng là nhân viên ngân hàng nhé.';

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const env = await h.start({
    links: {
      soak: {
        sim: { submitStatus: () => (Math.random() < 0.1 ? 0x58 : 0), maxRecords: 1e6 },
        conf: { window: 10, rate: 0, throttle_pause_ms: 20, reconnect_min: 1, reconnect_max: 2, enquire_link: 5, response_timeout: 3 },
      },
    },
  });
  const sim = env.sim;
  const pid = env.daemons[0].child.pid;
  const fig = { seconds: SECONDS, drops: 0, mt_queued: 0, mo_sent: 0, mo_acked: 0 };
  let stop = false;
  let n = 0;
  const t0 = Date.now();

  const mtLoop = (async () => {
    while (!stop) {
      const batch = [];
      for (let i = 0; i < MT_RATE / 10; i++) {
        n++;
        batch.push([`8496${String(1000000 + (n % 9000000)).padStart(7, '0')}`, n % 4 === 0 ? `${VI} #${n}` : `soak message #${n}`]);
      }
      await env.sql("INSERT INTO mt_messages (msisdn, text, kind, priority) SELECT unnest($1::text[]), unnest($2::text[]), 'api', 1",
        [batch.map((b) => b[0]), batch.map((b) => b[1])]);
      fig.mt_queued += batch.length;
      await sleep(100);
    }
  })();
  const moLoop = (async () => {
    let k = 0;
    while (!stop) {
      k++;
      fig.mo_sent++;
      sim.deliver({ from: `8491${String(2000000 + k).padStart(7, '0')}`, to: '8079', text: `HELP ${k}`, timeoutMs: 15000 })
        .then((st) => { if (st === 0) fig.mo_acked++; }).catch(() => {});
      await sleep(1000 / MO_RATE);
    }
  })();

  await sleep(Math.min(30, SECONDS / 4) * 1000);
  fig.rss_start_kb = rssKb(pid);
  let nextDrop = Date.now() + DROP * 1000;
  while (Date.now() - t0 < SECONDS * 1000) {
    if (Date.now() >= nextDrop) {
      sim.kill();
      fig.drops++;
      nextDrop += DROP * 1000;
    }
    await sleep(200);
  }
  stop = true;
  await Promise.all([mtLoop, moLoop]);
  fig.rss_end_kb = rssKb(pid);

  // drain: every MT final (temporary failures come back from the outbox)
  const deadline = Date.now() + 180000;
  let rows;
  for (;;) {
    rows = await env.sql('SELECT state, count(*)::int AS n FROM mt_messages GROUP BY state');
    const open = rows.filter((r) => !['delivered', 'failed', 'expired'].includes(r.state)).reduce((a, r) => a + r.n, 0);
    if (open === 0 || Date.now() > deadline) break;
    await sleep(1000);
  }
  await sleep(2000);
  fig.mt_states = Object.fromEntries(rows.map((r) => [r.state, r.n]));
  fig.mt_delivered = fig.mt_states.delivered || 0;
  fig.mt_total = rows.reduce((a, r) => a + r.n, 0); // queued by the soak + replies to the MOs
  fig.mt_lost = fig.mt_total - fig.mt_delivered;
  fig.mt_maybe_duplicate = (await env.sql('SELECT count(*)::int AS n FROM mt_messages WHERE maybe_duplicate'))[0].n;
  const texts = new Set(sim.submits.map((s) => s.text));
  fig.sim_submits_accepted = sim.counters.accepted;
  fig.sim_throttled = sim.counters.throttled;
  fig.sim_binds = sim.counters.binds;
  fig.sim_messages = sim.messages().length;
  fig.sim_distinct_single_texts = texts.size;
  fig.mo_rows = (await env.sql("SELECT count(*)::int AS n FROM mo_messages WHERE text LIKE 'HELP %'"))[0].n;
  fig.mo_distinct = (await env.sql("SELECT count(DISTINCT text)::int AS n FROM mo_messages WHERE text LIKE 'HELP %'"))[0].n;
  fig.rss_final_kb = rssKb(pid);
  const ex = await env.stopDaemon(0, { expectClean: false });
  fig.exit = ex;
  const log = env.log();
  fig.asan_reports = (log.match(/ERROR: (AddressSanitizer|LeakSanitizer)/g) || []).length;
  fs.writeFileSync('/tmp/smpp_soak.log', log);
  await env.stop();
  fig.elapsed_s = Math.round((Date.now() - t0) / 1000);
  console.log(JSON.stringify(fig));
  const ok = fig.mt_lost === 0 && fig.mo_distinct >= fig.mo_acked && ex.code === 0 && fig.asan_reports === 0;
  return ok ? 0 : 1;
}

main().then((code) => {
  if (pgdir) execFileSync('bash', [path.join(ROOT, 'scripts/pg.sh'), 'stop', pgdir]);
  if (pgdir) fs.rmSync(pgdir, { recursive: true, force: true });
  process.exit(code);
}, (e) => {
  console.error(e);
  if (pgdir) try { execFileSync('bash', [path.join(ROOT, 'scripts/pg.sh'), 'stop', pgdir]); } catch { /* */ }
  process.exit(1);
});
