'use strict';
// The dashboard (§4.4) in a real headless browser (Debian chromium driven
// by playwright-core): token entry, coverage numbers against the database,
// drill-down, scheduling a broadcast through the form, link status, the
// language toggle; a screenshot goes to tests/artifacts/dashboard.png.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');

const CHROMIUM = process.env.SG_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

test('dashboard in headless Chromium', async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing (apt-get install chromium)`);
  const { chromium } = require('playwright-core');
  const env = await h.start({ http: true });
  let browser;
  try {
    const tok = (await env.skillctl(['token', 'create', '--role', 'staff', '--name', 'dash'])).stdout.trim();
    const csv = 'household_code,province_code,district_code,commune_code,village,msisdn,language\n' +
      'D-1,01,001,00001,x,0913000001,vi\nD-2,01,001,00004,x,0913000002,vi\nD-3,01,002,00037,x,0913000003,vi\n' +
      'D-4,79,760,26734,x,0913000004,vi\n';
    const imp = await fetch(`${env.http}/api/v1/households/import`, {
      method: 'POST', headers: { Authorization: `Bearer ${tok}` }, body: csv });
    assert.strictEqual(imp.status, 200);
    await env.sql("INSERT INTO proficiency (msisdn, skill, proficient) SELECT '84913000001', code, true FROM skills");
    await env.sql("INSERT INTO proficiency (msisdn, skill, proficient) VALUES ('84913000004', 'payment', true)");

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
    const page = await browser.newPage({ viewport: { width: 1200, height: 1100 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await page.goto(env.http + '/');
    await page.fill('#token', tok);
    await page.click('#save-token');

    // coverage table = database
    await page.waitForSelector('#coverage-table tbody tr[data-code="01"]');
    const want = await env.sql("SELECT code, households, covered, covered_pct FROM sg_coverage('province') ORDER BY code");
    for (const w of want) {
      const row = page.locator(`#coverage-table tbody tr[data-code="${w.code}"]`);
      assert.strictEqual(await row.locator('td.households').textContent(), String(w.households));
      assert.strictEqual(await row.locator('td.covered').textContent(), String(w.covered));
      assert.strictEqual(await row.locator('td.pct').textContent(), Number(w.covered_pct || 0).toFixed(1));
    }
    assert.strictEqual(await page.locator('#coverage-table tbody tr[data-code="01"] td.households').textContent(), '3');
    assert.strictEqual(await page.locator('#chart rect.bar').count(), want.length);

    // drill down province -> district -> commune
    await page.click('#coverage-table tbody tr[data-code="01"]');
    await page.waitForSelector('#coverage-table[data-level="district"] tbody tr[data-code="001"]');
    assert.strictEqual(await page.locator('#coverage-table tbody tr[data-code="001"] td.households').textContent(), '2');
    await page.click('#coverage-table tbody tr[data-code="001"]');
    await page.waitForSelector('#coverage-table[data-level="commune"] tbody tr[data-code="00001"]');
    assert.strictEqual(await page.locator('#coverage-table tbody tr[data-code="00001"] td.covered').textContent(), '1');
    assert.strictEqual(await page.locator('#coverage-table tbody tr[data-code="00004"] td.covered').textContent(), '0');
    await page.click('#breadcrumb a[data-depth="0"]');
    await page.waitForSelector('#coverage-table[data-level="province"]');

    // link status
    await page.waitForSelector('#links tbody tr[data-link="viettel"]');
    assert.match(await page.locator('#links tbody tr[data-link="viettel"]').textContent(), /bound/);

    // schedule a broadcast through the form and see it listed
    await page.fill('#bc-name', 'Tuần lễ thanh toán');
    await page.fill('#bc-text-vi', 'Nhắn HOC 3 gửi 8079.');
    await page.fill('#bc-text-en', 'Text QUIZ 3 to 8079.');
    await page.fill('#bc-province', '01');
    await page.check('input[name=missing][value=payment]');
    await page.fill('#bc-start', '2099-10-01T08:00');
    await page.click('#bc-submit');
    await page.waitForSelector('#broadcast-list tbody tr td.name:text("Tuần lễ thanh toán")');
    const rows = await env.sql('SELECT id, name, state, segment FROM broadcasts');
    assert.strictEqual(rows.length, 1);
    assert.strictEqual(rows[0].state, 'scheduled');
    assert.deepStrictEqual(rows[0].segment, { province: '01', missing_skills: ['payment'] });
    assert.match(await page.locator('#message').textContent(), new RegExp(`#${rows[0].id}`));

    // language toggle
    assert.strictEqual(await page.locator('#coverage-section h2').textContent(), 'Độ phủ hộ gia đình');
    await page.click('#lang-toggle');
    assert.strictEqual(await page.locator('#coverage-section h2').textContent(), 'Household coverage');
    // the token survives a reload
    await page.reload();
    await page.waitForSelector('#coverage-table tbody tr[data-code="01"]');
    assert.strictEqual(await page.locator('#coverage-section h2').textContent(), 'Household coverage');

    const art = path.join(h.ROOT, 'tests/artifacts');
    fs.mkdirSync(art, { recursive: true });
    await page.screenshot({ path: path.join(art, 'dashboard.png'), fullPage: true });
    assert.deepStrictEqual(errors, []);
  } finally {
    if (browser) await browser.close();
    await env.stop();
  }
});
