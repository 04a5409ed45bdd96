// The harness of the browser tests: the real `taxgate demo` binary in a fresh temp directory on
// free loopback ports, Debian's Chromium through playwright-core, the SMS outbox, signed face
// callbacks. No fixed sleeps: everything waits for a port, a line, a file or an element.
'use strict';

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const CHROMIUM = process.env.TAXGATE_CHROMIUM || '/usr/bin/chromium';
const FACE_SECRET = 'demo-face-secret';
const START_TIMEOUT_MS = 30000;

// Every demo still running, so that an exit of this process (normal, failure or signal) ends them.
const running = new Set();
function killAll() {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch (_) { /* already gone */ }
  }
  running.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, function () { killAll(); process.exit(128 + (os.constants.signals[sig] || 0)); });
}

function taxgateBin() {
  const bin = process.env.TAXGATE_BIN;
  if (!bin) throw new Error('TAXGATE_BIN is not set: the Rust test (tests/e2e/browser.rs) sets it to the built taxgate binary');
  if (!fs.existsSync(bin)) throw new Error('TAXGATE_BIN does not exist: ' + bin);
  return bin;
}

function listenOn(port) {
  return new Promise(function (resolve) {
    const server = net.createServer();
    server.once('error', function () { resolve(null); });
    server.listen(port, '127.0.0.1', function () { resolve(server); });
  });
}

function close(server) {
  return new Promise(function (resolve) { server.close(function () { resolve(); }); });
}

// A port P with P+1 free too (the demo's admin listener takes port + 1).
async function freePortPair() {
  for (let i = 0; i < 50; i += 1) {
    const a = await listenOn(0);
    if (!a) continue;
    const port = a.address().port;
    const b = port < 65535 ? await listenOn(port + 1) : null;
    await close(a);
    if (b) {
      await close(b);
      return port;
    }
  }
  throw new Error('no pair of free loopback ports');
}

function tail(lines, n) {
  return lines.join('').split('\n').slice(-n).join('\n');
}

// Start `taxgate demo --port P` in a new temp directory; resolves once it printed its banner,
// which it does after the demo accounts are imported.
async function startOnce() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taxgate-browser-'));
  const port = await freePortPair();
  const child = spawn(taxgateBin(), ['demo', '--port', String(port)], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: Object.assign({}, process.env, { RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' }),
  });
  running.add(child);
  const out = [];
  const err = [];
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', function (d) { err.push(d); if (err.length > 400) err.splice(0, 200); });

  const ready = await new Promise(function (resolve) {
    const timer = setTimeout(function () { resolve('timeout'); }, START_TIMEOUT_MS);
    let seen = '';
    child.stdout.on('data', function (d) {
      out.push(d);
      if (out.length > 400) out.splice(0, 200);
      seen += d;
      if (seen.indexOf('login page:') >= 0) { clearTimeout(timer); resolve('ready'); }
    });
    child.once('exit', function (code, signal) { clearTimeout(timer); resolve('exit ' + (signal || code)); });
  });
  if (ready !== 'ready') {
    running.delete(child);
    child.kill('SIGKILL');
    const logs = 'stdout:\n' + tail(out, 20) + '\nstderr:\n' + tail(err, 20);
    fs.rmSync(dir, { recursive: true, force: true });
    return { error: 'taxgate demo on port ' + port + ': ' + ready + '\n' + logs };
  }

  const url = 'http://127.0.0.1:' + port;
  return {
    dir: dir,
    port: port,
    url: url,
    outbox: path.join(dir, 'demo-data', 'sms-outbox.jsonl'),
    logs: function () { return 'taxgate demo stdout (tail):\n' + tail(out, 15) + '\ntaxgate demo stderr (tail):\n' + tail(err, 25); },
    stop: async function () {
      if (!running.has(child)) return;
      running.delete(child);
      const exited = new Promise(function (resolve) { child.once('exit', resolve); });
      child.kill('SIGTERM');
      const timer = setTimeout(function () { child.kill('SIGKILL'); }, 5000);
      await exited;
      clearTimeout(timer);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// A demo of its own for one test. A port taken between the check and the bind is retried.
async function startDemo() {
  let last = null;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const demo = await startOnce();
    if (!demo.error) return demo;
    last = demo.error;
  }
  throw new Error(last);
}

// The newest SMS code sent to `phone` (read from the demo's outbox); waits for one to appear.
async function smsCode(demo, phone, timeoutMs) {
  const deadline = Date.now() + (timeoutMs || 10000);
  for (;;) {
    let lines = [];
    try {
      lines = fs.readFileSync(demo.outbox, 'utf8').split('\n').filter(Boolean).map(function (l) { return JSON.parse(l); });
    } catch (e) {
      if (e.code !== 'ENOENT' && !(e instanceof SyntaxError)) throw e;
    }
    const mine = lines.filter(function (m) { return m.to === phone && m.code; });
    if (mine.length) return mine[mine.length - 1].code;
    if (Date.now() > deadline) throw new Error('no SMS code was sent to ' + phone + ' (outbox ' + demo.outbox + ')');
    await new Promise(function (r) { setTimeout(r, 50); });
  }
}

// A face callback signed like the app backend signs it (CONTRACT section 6).
async function faceCallback(demo, nonce, idNumber, result) {
  const body = JSON.stringify({ nonce: nonce, id_number: idNumber, result: result || 'pass' });
  const ts = String(Math.floor(Date.now() / 1000));
  const sig = crypto.createHmac('sha256', FACE_SECRET).update(ts + '.' + body).digest('hex');
  const res = await fetch(demo.url + '/auth/face/callback', {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-taxgate-timestamp': ts,
      'x-taxgate-signature': 'sha256=' + sig,
    },
    body: body,
  });
  return { status: res.status, text: await res.text() };
}

async function launchBrowser() {
  const { chromium } = require('playwright-core');
  // playwright-core gives every launch a new empty user-data-dir of its own.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    timeout: 60000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

module.exports = { startDemo, smsCode, faceCallback, launchBrowser, CHROMIUM };
