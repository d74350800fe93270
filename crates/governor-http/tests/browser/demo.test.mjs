// The newcomer's path through `governor demo --serve`: the CFO is emailed
// (through the demo's own SMTP server, which prints each email's links),
// opens the approve link in a browser, confirms, and the transfer runs;
// then the console shows the demo's own data.
//
//   GOVERNOR_BIN=target/debug/governor node --test demo.test.mjs
//
// With SCREENSHOTS=1 the README's screenshots are taken from this run:
// docs/screenshots/demo-*.png and email-link-*.png.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createServer } from "node:net";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../../..");
const bin = resolve(root, process.env.GOVERNOR_BIN || "target/debug/governor");
const shots = join(root, "docs", "screenshots");
const takeShots = process.env.SCREENSHOTS === "1";

let demo;
let dir;
let browser;
let output = "";
let base;

async function freePort() {
  const probe = createServer();
  await new Promise((ok) => probe.listen(0, "127.0.0.1", ok));
  const { port } = probe.address();
  await new Promise((ok) => probe.close(ok));
  return port;
}

async function waitFor(predicate, what, ms = 20000) {
  const until = Date.now() + ms;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}; the demo printed:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "governor-demo-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  demo = spawn(bin, ["demo", "--serve", "--db", join(dir, "demo.db"), "--bind", `127.0.0.1:${port}`, "--agent-every-ms", "400"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  demo.stdout.on("data", (chunk) => (output += chunk.toString()));
  await waitFor(() => /CFO token:\s+(\S+)/.test(output), "the demo to serve");
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (demo) demo.kill("SIGTERM");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function api(token, path) {
  const r = await fetch(`${base}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  return r.json();
}

test("the CFO approves a transfer from the link the demo emailed, and it runs", async () => {
  const cfo = /CFO token:\s+(\S+)/.exec(output)[1];
  const approve = await waitFor(() => {
    const m = /^email to cfo@company\.com[^\n]*\n\s+Approve: (\S+)/m.exec(output);
    return m && m[1];
  }, "an emailed approve link");
  assert.ok(approve.startsWith(`${base}/links/gl1.`), approve);
  const id = await waitFor(async () => {
    const pending = await api(cfo, "/govern/approvals/pending");
    return pending.items.length > 0 && pending.items.at(-1).execution_id;
  }, "a pending transfer");
  assert.ok(id);

  const page = await (await browser.newContext({ viewport: { width: 1000, height: 760 }, locale: "en-US" })).newPage();
  const shown = await page.goto(approve);
  assert.equal(shown.status(), 200);
  assert.match(await page.textContent("h2"), /^Wire €[\d,]+\.\d\d to /);
  assert.match(await page.textContent("main"), /The money is sent to the recipient immediately/);
  assert.match(await page.textContent("main"), /input\.amount >= 10000/);
  if (takeShots) await page.screenshot({ path: join(shots, "email-link-confirm.png"), fullPage: true });
  await page.fill("#reason", "matches invoice 2026-118");
  await Promise.all([page.waitForNavigation(), page.click("form.confirm button")]);
  assert.match(await page.textContent(".outcome"), /^Approved/);
  if (takeShots) await page.screenshot({ path: join(shots, "email-link-approved.png") });
  const decidedId = /Execution ([0-9a-f-]{36})/.exec(await page.textContent("main"))[1];
  // The demo's worker runs the approved transfer.
  const done = await waitFor(async () => {
    const e = await api(cfo, `/govern/executions/${decidedId}`);
    return e.execution && e.execution.status === "completed" && e;
  }, "the approved transfer to run");
  assert.equal(done.execution.status, "completed");
  await page.context().close();
});

test("the console shows the demo's requests on a desk and on a phone", async () => {
  const cfo = /CFO token:\s+(\S+)/.exec(output)[1];
  for (const [name, width, height] of [["desk", 1280, 800], ["phone", 390, 844]]) {
    const page = await (await browser.newContext({ viewport: { width, height }, locale: "en-US", hasTouch: width < 600 })).newPage();
    await page.goto(`${base}/dashboard/`);
    await page.fill("#token", cfo);
    await page.click("#sign-in-form button");
    await page.waitForSelector("#pending-list .row");
    if (takeShots) await page.screenshot({ path: join(shots, `demo-${name}-queue.png`) });
    await page.click("#pending-list .row .action");
    await page.waitForSelector("#detail #arguments");
    assert.doesNotMatch(await page.textContent("#detail"), /<script>/);
    if (takeShots) await page.screenshot({ path: join(shots, `demo-${name}-decision.png`) });
    if (name === "desk") {
      const executions = await api(cfo, "/govern/executions?status=completed");
      const done = executions.items.find((e) => e.action === "transfer_funds" || e.action === "wire_transfer");
      if (done) {
        await page.goto(`${base}/dashboard/#/executions/${done.id}`);
        await page.waitForSelector("#execution-status");
        if (takeShots) await page.screenshot({ path: join(shots, "execution-timeline.png") });
      }
    }
    await page.context().close();
  }
});
