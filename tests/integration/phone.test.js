'use strict';
// `skillctl phone` driven like a person would: in a terminal (tmux), against
// the simulator CLI that `make run` uses and the real daemon.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const path = require('node:path');
const h = require('./lib/harness');

const HAVE_TMUX = (() => { try { execFileSync('tmux', ['-V']); return true; } catch { return false; } })();

test('skillctl phone: SMS and USSD from a terminal', { skip: !HAVE_TMUX && 'tmux is not installed' }, async () => {
  const smppPort = await h.freePort();
  const ctrlPort = await h.freePort();
  const sim = spawn('node', [path.join(h.ROOT, 'tests/sim/smsc-cli.js'), '--port', String(smppPort),
    '--control', String(ctrlPort), '--receipts'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let simOut = '';
  sim.stdout.on('data', (b) => { simOut += b; });
  const session = `sgphone${process.pid}`;
  let env;
  try {
    await h.waitFor(() => /listening/.test(simOut), 10000, 'the simulator');
    env = await h.start({
      links: {},
      conf: { 'smsc viettel': { host: '127.0.0.1', port: smppPort, system_id: 'skillgate', password: 'secret',
        short_codes: '8079', ussd_codes: '*8079#', default_route: 'yes', rate: 1000 } },
    });
    await env.waitFor(() => /bound to SMSC/.test(env.log()), 10000, 'the bind');
    const screen = () => execFileSync('tmux', ['capture-pane', '-p', '-J', '-t', session, '-S', '-200']).toString();
    const type = (line) => execFileSync('tmux', ['send-keys', '-t', session, line, 'Enter']);
    execFileSync('tmux', ['new-session', '-d', '-s', session, '-x', '200', '-y', '60',
      `${path.join(h.BIN, 'skillctl')} -c ${env.confPath} phone 0912345678 --sim 127.0.0.1:${ctrlPort}`]);
    await env.waitFor(() => /Phone 84912345678/.test(screen()), 5000, 'the phone prompt');
    type('HOC 1');
    await env.waitFor(() => /\[SMS from 8079\] Kiểm tra kỹ năng 1:[\s\S]*\n\s*1\/5 /.test(screen()), 10000, 'the first question');
    type('*8079#');
    await env.waitFor(() => /\[USSD\] [\s\S]*1 Kiem tra/.test(screen()), 10000, 'the USSD menu');
    type('5');
    await env.waitFor(() => screen().split('[USSD').length - 1 >= 2, 10000, 'the next USSD screen');
  } finally {
    try { execFileSync('tmux', ['kill-session', '-t', session]); } catch { /* already gone */ }
    if (env) await env.stop();
    sim.kill();
  }
});
