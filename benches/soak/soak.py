#!/usr/bin/env python3
"""Soak driver for taxgate (see run.sh). Standard library only.

Starts an upstream (threaded HTTP server), imports a seed, runs `taxgate serve`, and drives
SOAK_WORKERS client threads for SOAK_SECS seconds. Every worker repeats: log in (password + SMS),
a burst of proxied requests, an identity switch between two enterprises, more requests, and now
and then a logout. A reloader changes the watched policy directory and calls
POST /admin/policies/reload, alternately, every 30 s. RSS of the gateway is sampled every 5 s.

Checks at the end:
  * zero unexpected answers (every call has one expected status);
  * RSS growth after warm-up (the first 20 % of the run, at least 30 s) below 10 %;
  * every proxied request the clients sent has its decision in audit_events, and the upstream
    saw exactly the allowed ones.
"""
import argparse, http.client, json, os, shutil, signal, sqlite3, subprocess, sys, tempfile
import threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def id_number(prefix17):
    w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    s = sum(int(c) * w[i] for i, c in enumerate(prefix17))
    return prefix17 + "10X98765432"[s % 11]

def uscc(i):
    chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    org = "MA%06d" % i
    ow = [3, 7, 9, 10, 5, 8, 4, 2]
    c = 11 - sum(int(ch, 36) * ow[k] for k, ch in enumerate(org)) % 11
    org += {10: "X", 11: "0"}.get(c, str(c))
    body = "91140100" + org
    w = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
    s = sum(chars.index(ch) * w[k] for k, ch in enumerate(body))
    return body + chars[(31 - s % 31) % 31]

class Upstream(BaseHTTPRequestHandler):
    count = 0
    lock = threading.Lock()
    protocol_version = "HTTP/1.1"
    def _answer(self):
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        with Upstream.lock:
            Upstream.count += 1
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = _answer
    def log_message(self, *a):
        pass

def free_port():
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = {}
        self.unexpected = []
        self.proxied = 0
        self.proxied_allowed = 0
    def note(self, what, status, expected, body=b""):
        with self.lock:
            self.calls[what] = self.calls.get(what, 0) + 1
            if status not in expected:
                self.unexpected.append((what, status, body[:200]))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--policies", required=True)
    args = ap.parse_args()
    secs = int(os.environ.get("SOAK_SECS", "600"))
    workers = int(os.environ.get("SOAK_WORKERS", "4"))
    work = tempfile.mkdtemp(prefix="taxgate-soak.")
    policies = os.path.join(work, "policies")
    shutil.copytree(args.policies, policies)

    up = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    up.daemon_threads = True
    threading.Thread(target=up.serve_forever, daemon=True).start()

    ent_a, ent_b = uscc(1), uscc(2)
    persons = []
    seed = {"persons": [], "enterprises": [
        {"taxpayer_id": ent_a, "name": "浸泡测试甲公司", "agency": False},
        {"taxpayer_id": ent_b, "name": "浸泡测试乙公司", "agency": False}],
        "bindings": [], "agency_agreements": []}
    for i in range(workers):
        pid = id_number("14010519900101%03d" % (100 + i))
        phone = "139%08d" % (5000 + i)
        persons.append((pid, phone))
        seed["persons"].append({"id_number": pid, "name": "浸泡%d" % i, "phone": phone,
                                "password": "Soak-Pass-2026!"})
        seed["bindings"].append({"person": pid, "enterprise": ent_a, "role": "legal_representative",
                                 "enterprise_confirmed": True, "person_confirmed": True})
        seed["bindings"].append({"person": pid, "enterprise": ent_b, "role": "invoice_clerk",
                                 "enterprise_confirmed": True, "person_confirmed": True})
    with open(os.path.join(work, "seed.json"), "w") as f:
        json.dump(seed, f, ensure_ascii=False)

    public, admin = free_port(), free_port()
    outbox = os.path.join(work, "sms-outbox.jsonl")
    db = os.path.join(work, "taxgate.db")
    routes = "".join(f'\n[[routes]]\nprefix = "/api/{p}"\naction = "{a}"\nupstream = "etax"\n'
                     for p, a in [("declare", "declare"), ("invoice", "invoice"), ("query", "query")])
    # taxgate refuses to start without [upstream_identity]: sign with a key of the run's own.
    key = os.path.join(work, "assertion.pem")
    subprocess.run([args.bin, "keys", "generate", "--out", key], check=True,
                   stdout=subprocess.DEVNULL)
    cfg = f'''[server]
listen = "127.0.0.1:{public}"
[admin]
listen = "127.0.0.1:{admin}"
[store]
url = "sqlite://{db}"
[policies]
dir = "{policies}"
watch = true
[sms]
provider = "file"
path = "{outbox}"
[face]
callback_secret = "soak-secret"
[session]
cookie_secure = false
[login]
sms_resend_secs = 0
sms_daily_limit = 1000000
auth_requests_per_minute = 1000000
[upstream_identity]
signing_key = "{key}"
[[upstreams]]
name = "etax"
url = "http://127.0.0.1:{up.server_address[1]}"
timeout_secs = 10
{routes}'''
    cfg_path = os.path.join(work, "taxgate.toml")
    with open(cfg_path, "w") as f:
        f.write(cfg)
    subprocess.run([args.bin, "import", "--config", cfg_path, os.path.join(work, "seed.json")],
                   check=True, stdout=subprocess.DEVNULL)
    log = open(os.path.join(work, "taxgate.log"), "w")
    gw = subprocess.Popen([args.bin, "serve", "--config", cfg_path], stdout=log, stderr=log)
    deadline = time.time() + 30
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("taxgate did not become ready")
        time.sleep(0.1)

    stats = Stats()
    stop = threading.Event()
    outbox_lock = threading.Lock()

    def call(method, path, body=None, token=None, port=public):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        headers = {"host": "gw.test"}
        if body is not None:
            headers["content-type"] = "application/json"
            body = json.dumps(body)
        if token:
            headers["cookie"] = "taxgate_session=" + token
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data, r.getheader("set-cookie") or ""

    def last_code(phone, after):
        with outbox_lock, open(outbox) as f:
            lines = f.readlines()
        for line in reversed(lines[after:]):
            m = json.loads(line)
            if m["to"] == phone:
                return m["code"]
        return None

    def outbox_len():
        try:
            with outbox_lock, open(outbox) as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def worker(i):
        pid, phone = persons[i]
        n = 0
        while not stop.is_set():
            st, data, _ = call("POST", "/auth/login", {"entry": "enterprise", "taxpayer_id": ent_a,
                                                      "account": pid, "password": "Soak-Pass-2026!"})
            stats.note("login", st, {200}, data)
            if st != 200:
                continue
            challenge = json.loads(data)["challenge"]
            before = outbox_len()
            st, data, _ = call("POST", "/auth/sms/send", {"challenge": challenge})
            stats.note("sms_send", st, {200}, data)
            code = last_code(phone, before)
            st, data, cookie = call("POST", "/auth/sms/verify", {"challenge": challenge, "code": code})
            stats.note("sms_verify", st, {200}, data)
            if st != 200:
                continue
            token = cookie.split(";")[0].split("=", 1)[1]
            for round_ in range(20):
                if stop.is_set():
                    break
                for path, ok in (("/api/declare/x", 200), ("/api/invoice/y", 200), ("/api/query/z", 200)):
                    st, data, _ = call("GET", path, token=token)
                    with stats.lock:
                        stats.proxied += 1
                        stats.proxied_allowed += st == 200
                    stats.note("proxied", st, {ok}, data)
                # Switch to B (invoice clerk: declare is denied there), then back to A.
                st, data, _ = call("POST", "/account/switch",
                                   {"enterprise": ent_b, "role": "invoice_clerk"}, token)
                stats.note("switch", st, {200}, data)
                st, data, _ = call("GET", "/api/declare/denied", token=token)
                with stats.lock:
                    stats.proxied += 1
                    stats.proxied_allowed += st == 200
                stats.note("proxied_denied", st, {403}, data)
                st, data, _ = call("POST", "/account/switch",
                                   {"enterprise": ent_a, "role": "legal_representative"}, token)
                stats.note("switch", st, {200}, data)
            n += 1
            if n % 2 == 0:
                st, data, _ = call("POST", "/auth/logout", {}, token)
                stats.note("logout", st, {204}, data)

    def reloader():
        k = 0
        while not stop.wait(30):
            k += 1
            if k % 2:
                with open(os.path.join(policies, "zz-soak.cedar"), "w") as f:
                    f.write('@id("soak.noop.%d")\n@reason("not_permitted")\n'
                            'forbid (principal, action == Action::"declare", resource) when { false };\n' % k)
                stats.note("reload_watch", 200, {200})
            else:
                st, data, _ = call("POST", "/admin/policies/reload", port=admin)
                ok = st == 200 and json.loads(data)["last_error"] is None
                stats.note("reload_admin", 200 if ok else 500, {200}, data)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
    threads.append(threading.Thread(target=reloader, daemon=True))
    started = time.time()
    for t in threads:
        t.start()
    warm = max(30, secs // 5)
    samples = []
    while time.time() - started < secs:
        time.sleep(5)
        samples.append((time.time() - started, rss_kib(gw.pid)))
        if gw.poll() is not None:
            stats.unexpected.append(("gateway exited", gw.returncode, b""))
            break
    stop.set()
    for t in threads:
        t.join(timeout=30)
    time.sleep(2)  # let the audit writer flush its last batch
    status_policies = json.loads(call("GET", "/admin/policies", port=admin)[1])
    gw.send_signal(signal.SIGTERM)
    gw.wait(timeout=30)

    con = sqlite3.connect(db)
    audited = con.execute("SELECT count(*) FROM audit_events WHERE path LIKE '/api/%'").fetchone()[0]
    versions = con.execute("SELECT count(DISTINCT policy_version) FROM audit_events "
                           "WHERE path LIKE '/api/%'").fetchone()[0]
    con.close()
    after_warm = [r for t, r in samples if t >= warm]
    base = after_warm[0] if after_warm else 0
    peak = max(after_warm) if after_warm else 0
    end = after_warm[-1] if after_warm else 0
    growth = (end - base) / base * 100 if base else 0.0

    print(f"soak: {secs}s, {workers} workers, work dir {work}")
    print("calls: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.calls.items())))
    total = sum(stats.calls.values())
    print(f"requests: {total} ({total / secs:.0f}/s); proxied {stats.proxied} "
          f"({stats.proxied_allowed} allowed), upstream saw {Upstream.count}")
    print(f"audit decisions for /api/*: {audited}; policy versions seen: {versions}; "
          f"policy status at the end: last_error={status_policies['last_error']}")
    print(f"RSS after warm-up ({warm}s): {base} KiB -> end {end} KiB (peak {peak} KiB), "
          f"growth {growth:+.1f} %")
    failures = []
    if stats.unexpected:
        failures.append(f"{len(stats.unexpected)} unexpected answers, first: {stats.unexpected[:3]}")
    if growth >= 10:
        failures.append(f"RSS grew {growth:.1f} % after warm-up")
    if audited != stats.proxied:
        failures.append(f"{stats.proxied} proxied requests sent but {audited} decisions audited")
    if Upstream.count != stats.proxied_allowed:
        failures.append(f"upstream saw {Upstream.count}, {stats.proxied_allowed} were allowed")
    if failures:
        print("FAIL: " + "; ".join(failures))
        sys.exit(1)
    print("PASS")
    shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
