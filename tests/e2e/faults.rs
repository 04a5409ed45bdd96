//! Issue 9, faults: the store cut mid-run, the policy directory deleted, an upstream hanging
//! mid-body, an import killed mid-transaction, and one of two instances stopped under load.
//! Real processes and real sockets on loopback; every fault is injected deterministically.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use taxgate_e2e::*;
use taxgate_store::{IdNumber, Store, TaxpayerId};

/// PostgreSQL unreachable mid-run (a relay between gateway and server is cut): every routed
/// request is refused 503 `store_unavailable` and nothing reaches the upstream, `/readyz` goes
/// red; when the relay is restored the same process serves again without a restart.
#[tokio::test]
async fn postgres_cut_mid_run_fails_closed_and_recovers() {
    let Some(url) = test_postgres_url() else {
        return;
    };
    let relay = Relay::start(pg_addr(&url)).await;
    let (mut env, _) = Env::start_on(&pg_url_via(&url, relay.addr)).await;
    let (token, _) = env.login_wang().await;
    let a = env.get("/api/declare/before", Some(&token)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        env.up.next_seen().await.path_and_query,
        "/api/declare/before"
    );
    assert_eq!(get(env.gw.admin, "/readyz").await.status, StatusCode::OK);

    relay.cut();
    // The session is cached: only the health ping (1 s) can tell. Poll until the outage is
    // noticed, then nothing at all may pass.
    eventually(Duration::from_secs(5), "outage noticed", || async {
        let a = env.get("/api/declare/poll", Some(&token)).await;
        (a.status == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    let _ = drain_seen(&mut env.up);
    for path in ["/api/declare/x", "/api/query/y", "/api/invoice/z"] {
        let a = env.get(path, Some(&token)).await;
        assert_eq!(
            (a.status, a.error_code()),
            (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable".into()),
            "{path}"
        );
    }
    // A login needs the store too: refused, not a crash or a 500.
    let login = env.login("person", None, WANG, WANG_PW).await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(login.error_code(), "store_unavailable");
    let ready = get(env.gw.admin, "/readyz").await;
    assert_ne!(ready.status, StatusCode::OK, "/readyz stayed green");
    assert_eq!(get(env.gw.admin, "/healthz").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        drain_seen(&mut env.up).is_empty(),
        "a request was proxied while the store was down"
    );

    relay.restore();
    eventually(Duration::from_secs(10), "service resumed", || async {
        let a = env.get("/api/declare/after", Some(&token)).await;
        (a.status == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(get(env.gw.admin, "/readyz").await.status, StatusCode::OK);
    assert!(
        drain_seen(&mut env.up)
            .iter()
            .all(|s| s.path_and_query == "/api/declare/after")
    );
    // A fresh login works again too.
    let _ = env
        .login_sms("person", None, WANG, WANG_PW, "13800138000")
        .await;
    assert!(!env.gw.done.is_finished(), "the gateway task ended");
    env.gw.stop().await;
}

/// The watched policy directory deleted while running: the last good set keeps deciding, the
/// error shows in `/admin/policies`; when the directory comes back it is picked up by itself.
#[tokio::test]
async fn deleted_policy_directory_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let (text, policies) = config_with_watched_policies(dir.path(), &up.url());
    let gw = Gateway::start(&text, dir.path()).await;
    taxgate_store::import_seed(&gw.core.store, &seed_json().to_string(), unix_now())
        .await
        .unwrap();
    let mut env = Env { dir, gw, up };
    let (token, _) = env.login_wang().await;
    let status = || async { get(env.gw.admin, "/admin/policies").await.json() };
    let v1 = status().await["version"].as_str().unwrap().to_string();

    std::fs::remove_dir_all(&policies).unwrap();
    let broken = eventually(Duration::from_secs(6), "last_error reported", || async {
        let s = status().await;
        s["last_error"].is_string().then_some(s)
    })
    .await;
    assert_eq!(broken["version"], v1.as_str(), "{broken}");
    // Still deciding with the last good set: allowed and denied as before.
    let a = env.get("/api/declare/x", Some(&token)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        env.up
            .next_seen()
            .await
            .header("x-taxgate-decision")
            .is_some()
    );
    let denied = env.get("/api/personal/x", Some(&token)).await;
    assert_eq!(
        denied.status,
        StatusCode::FORBIDDEN,
        "personal_tax is the person entry's"
    );
    assert_eq!(get(env.gw.admin, "/readyz").await.status, StatusCode::OK);

    // The watcher notices a replaced directory by a 1 s poll of its identity (inode). Give it
    // that poll while the directory is gone: a directory recreated within the same second can
    // reuse the inode and is then missed (see `policy_directory_recreated_at_once_is_picked_up`).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    copy_dir(&policies_dir(), &policies);
    let fixed = eventually(Duration::from_secs(8), "recovery picked up", || async {
        let s = status().await;
        s["last_error"].is_null().then_some(s)
    })
    .await;
    assert_eq!(fixed["version"], v1.as_str(), "same files, same version");
    assert_eq!(
        env.get("/api/declare/y", Some(&token)).await.status,
        StatusCode::OK
    );
    env.gw.stop().await;
}

/// A policy directory deleted and recreated between two 1 s polls often gets its inode back;
/// the watcher must still notice (it compares the change time too) and re-arm the inotify
/// watch the kernel dropped with the old directory, or every later edit would be ignored until
/// a manual reload or SIGHUP.
#[tokio::test]
async fn policy_directory_recreated_at_once_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let (text, policies) = config_with_watched_policies(dir.path(), &up.url());
    let gw = Gateway::start(&text, dir.path()).await;
    let status = || async { get(gw.admin, "/admin/policies").await.json() };
    let v1 = status().await["version"].as_str().unwrap().to_string();
    let inode =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&policies);
    // Swapped at once, as `rm -rf policies && cp -r new policies` does.
    std::fs::remove_dir_all(&policies).unwrap();
    copy_dir(&policies_dir(), &policies);
    eprintln!("inode reused: {}", before == inode(&policies));
    tokio::time::sleep(Duration::from_millis(2500)).await; // two polls of the watcher
    // Any later edit must still be seen.
    std::fs::write(
        policies.join("zz-extra.cedar"),
        "@id(\"extra.noop\")\n@reason(\"not_permitted\")\nforbid (principal, action == Action::\"declare\", resource) when { false };\n",
    )
    .unwrap();
    eventually(
        Duration::from_secs(6),
        "edit after the swap picked up",
        || async { (status().await["version"] != v1.as_str()).then_some(()) },
    )
    .await;
    gw.stop().await;
}

/// An upstream that sends the head and part of the body, then hangs with the connection open.
/// The client must never be handed a complete response.
#[tokio::test]
async fn upstream_hanging_mid_body_is_never_complete() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    let (hold_tx, mut hold_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = hang.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                .await;
            // Keep the socket open: hang, neither finishing nor closing.
            let _ = hold_tx.send(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        dir.path(),
        &format!("http://{hang_addr}"),
        "\n[dev]\nallow_all = true\n",
    );
    let gw = Gateway::start(&text, dir.path()).await;
    let resp = get_unread(gw.public, "/api/declare/hang").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let _held = hold_rx.recv().await;
    // The upstream's timeout (2 s) also bounds its silence mid-body: within twice that, the
    // client's response is cut (an error, never a complete body, never held open forever).
    match tokio::time::timeout(Duration::from_secs(4), resp.into_body().collect()).await {
        Ok(Err(_)) => {}
        Err(_) => panic!("the gateway held the client connection open past the upstream timeout"),
        Ok(Ok(body)) => panic!(
            "a hanging upstream body was reported complete ({} bytes)",
            body.to_bytes().len()
        ),
    }
    gw.stop().await;
}

/// `taxgate import` killed with SIGKILL in the middle of its write transaction leaves nothing;
/// a completed run leaves everything. Never a part.
#[tokio::test]
async fn an_import_killed_mid_transaction_leaves_all_or_nothing() {
    const N: usize = 15_000;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "http://127.0.0.1:9", "");
    let cfg = dir.path().join("taxgate.toml");
    std::fs::write(&cfg, &text).unwrap();
    let ids: Vec<String> = (0..N).map(taxpayer_id).collect();
    // Enterprises carry no password (no hashing): the run is dominated by the write transaction.
    let seed = json!({
        "persons": [], "bindings": [], "agency_agreements": [],
        "enterprises": ids.iter().enumerate().map(|(i, t)| json!({
            "taxpayer_id": t, "name": format!("压力测试企业{i}"), "agency": false
        })).collect::<Vec<_>>(),
    });
    let seed_path = dir.path().join("big-seed.json");
    std::fs::write(&seed_path, seed.to_string()).unwrap();
    let migrate = std::process::Command::new(taxgate_bin())
        .args(["migrate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{migrate:?}");

    // Kill once the write-ahead log has grown well into the transaction.
    let wal = dir.path().join("taxgate.db-wal");
    let mut child = std::process::Command::new(taxgate_bin())
        .args(["import", "--config"])
        .arg(&cfg)
        .arg(&seed_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut killed_mid_way = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if wal_len > 512 * 1024 {
            child.kill().unwrap(); // SIGKILL
            killed_mid_way = true;
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "import hung");
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.wait();
    eprintln!("import killed after {:?}", started.elapsed());
    assert!(
        killed_mid_way,
        "the import finished before it could be killed: make the seed bigger"
    );
    let present = count_present(dir.path(), &ids).await;
    assert!(
        present == 0 || present == N,
        "a killed import left {present} of {N} enterprises"
    );
    // 0 when the kill landed inside the transaction (the usual case: the log spills long
    // before the commit), all of them when it landed just after the commit.
    eprintln!("after SIGKILL: {present} of {N} enterprises");

    // The same import run to completion: everything.
    let full_run = Instant::now();
    let done = std::process::Command::new(taxgate_bin())
        .args(["import", "--config"])
        .arg(&cfg)
        .arg(&seed_path)
        .output()
        .unwrap();
    assert!(done.status.success(), "{done:?}");
    eprintln!("full import took {:?}", full_run.elapsed());
    assert_eq!(count_present(dir.path(), &ids).await, N);
}

/// How many of `ids` the store under `dir` holds (opened the way the gateway opens it), judged
/// on a sample spread over the whole file (its first and last rows included): one transaction
/// means a part would show as some present and some absent.
async fn count_present(dir: &std::path::Path, ids: &[String]) -> usize {
    let store =
        taxgate_store::AnyStore::connect(&format!("sqlite://{}", dir.join("taxgate.db").display()))
            .await
            .unwrap();
    let sample: Vec<&String> = ids.iter().step_by(211).chain(ids.last()).collect();
    let mut n = 0;
    for t in &sample {
        if store
            .enterprise(&TaxpayerId::parse(t).unwrap())
            .await
            .unwrap()
            .is_some()
        {
            n += 1;
        }
    }
    if n == sample.len() {
        ids.len()
    } else if n == 0 {
        0
    } else {
        n
    }
}

/// The `i`th synthetic unified social credit code (both GB 32100 check characters).
fn taxpayer_id(i: usize) -> String {
    const CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [usize; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    const ORG_WEIGHTS: [usize; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let org = format!("MA{i:06}");
    let org_sum: usize = org
        .bytes()
        .zip(ORG_WEIGHTS)
        .map(|(c, w)| (c as char).to_digit(36).unwrap() as usize * w)
        .sum();
    let org_check = match 11 - org_sum % 11 {
        10 => 'X',
        11 => '0',
        n => char::from_digit(n as u32, 10).unwrap(),
    };
    let body = format!("91140100{org}{org_check}").into_bytes();
    let sum: usize = body
        .iter()
        .zip(WEIGHTS)
        .map(|(c, w)| CHARS.iter().position(|x| x == c).unwrap() * w)
        .sum();
    let mut s = String::from_utf8(body).unwrap();
    s.push(CHARS[(31 - sum % 31) % 31] as char);
    assert!(TaxpayerId::parse(&s).is_ok(), "{s}");
    s
}

/// Two instances on one PostgreSQL; one is stopped with SIGTERM while clients send to both,
/// retrying on the other only when a connection is refused. No request fails otherwise.
///
/// It failed about once in ten runs with "connection closed before message completed" from the
/// stopped instance: a connection accepted just before the signal, whose request hyper had not
/// read yet, was closed unanswered (see `sigterm_answers_connections_already_accepted_or_queued`
/// for the deterministic version). A failure now reports every failed request with its instance
/// and its time relative to the signal, and the stopped instance's log.
#[tokio::test]
async fn sigterm_one_of_two_instances_under_load_loses_nothing() {
    let Some(url) = test_postgres_url() else {
        return;
    };
    let (env, text) = Env::start_on(&url).await;
    let doomed = ServeChild::start(env.dir.path(), "doomed", &text).await;
    let (token, _) = env.login_wang().await;
    let addrs = [env.gw.public, doomed.public];
    let names = ["survivor", "doomed"];
    let started = Instant::now();
    // Milliseconds from `started` to the SIGTERM (0 until sent).
    let term_at = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, retried) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for w in 0..4usize {
        let (token, stop, ok, retried) = (token.clone(), stop.clone(), ok.clone(), retried.clone());
        let (term_at, failures) = (term_at.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let req = |slow: bool| {
                    // Some requests take a while, so the drain has in-flight work.
                    let path = if slow {
                        "/api/declare/slow/150/x"
                    } else {
                        "/api/query/x"
                    };
                    Request::get(path)
                        .header("cookie", format!("taxgate_session={token}"))
                        .body(empty())
                        .unwrap()
                };
                let mut target = i % 2;
                let sent_ms = started.elapsed().as_millis();
                let answer = match try_send(addrs[target], req(i % 3 == 0)).await {
                    Err(SendError::Refused(_)) => {
                        retried.fetch_add(1, Ordering::Relaxed);
                        target = (i + 1) % 2;
                        try_send(addrs[target], req(false)).await
                    }
                    other => other,
                };
                let outcome = match answer {
                    Ok(a) if a.status == StatusCode::OK => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Ok(a) => format!("{} {}", a.status, String::from_utf8_lossy(&a.body)),
                    Err(e) => format!("{e:?}"),
                };
                let term = term_at.load(Ordering::SeqCst);
                let when = if term == 0 {
                    format!("sent at {sent_ms} ms, before the SIGTERM")
                } else {
                    format!(
                        "sent {} ms after the SIGTERM",
                        i128::try_from(sent_ms).unwrap() - i128::from(term)
                    )
                };
                failures.lock().unwrap().push(format!(
                    "worker {w} request {i} to the {} instance ({when}): {outcome}",
                    names[target]
                ));
            }
        }));
    }
    eventually(Duration::from_secs(10), "load running", || async {
        (ok.load(Ordering::Relaxed) >= 20).then_some(())
    })
    .await;
    term_at.store(
        u64::try_from(started.elapsed().as_millis()).unwrap().max(1),
        Ordering::SeqCst,
    );
    doomed.signal("TERM");
    let mut doomed = doomed;
    let exited = eventually(Duration::from_secs(10), "SIGTERM drain ended", || {
        let st = doomed.child.try_wait().unwrap();
        async move { st }
    })
    .await;
    assert!(
        exited.success(),
        "{exited:?}\n{}",
        std::fs::read_to_string(env.dir.path().join("doomed.log")).unwrap_or_default()
    );
    let served_before = ok.load(Ordering::Relaxed);
    eventually(Duration::from_secs(10), "load continued", || async {
        (ok.load(Ordering::Relaxed) >= served_before + 20).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let doomed_log = std::fs::read_to_string(env.dir.path().join("doomed.log")).unwrap_or_default();
    assert!(
        failures.is_empty(),
        "{} request(s) failed ({} answered 200, {} retried after a refusal):\n{}\n\
         log of the stopped instance:\n{doomed_log}",
        failures.len(),
        ok.load(Ordering::Relaxed),
        retried.load(Ordering::Relaxed),
        failures.join("\n")
    );
    assert!(
        retried.load(Ordering::Relaxed) > 0,
        "no request hit the stopped instance: the test proved nothing"
    );
    env.gw.stop().await;
}

/// SIGTERM while connections wait to be served: one accepted whose request has not arrived yet
/// (it comes after the signal), and several the kernel completed while the gateway was paused
/// (SIGSTOP) and had not accepted yet. Every request on them is answered 200 and reaches the
/// upstream; none is dropped unanswered or reset. (Before: the first was closed by hyper-util's
/// protocol sniffing when the shutdown began, the others were reset with the listener; that
/// was the occasional failure of `sigterm_one_of_two_instances_under_load_loses_nothing`.)
#[tokio::test]
async fn sigterm_answers_connections_already_accepted_or_queued() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), &up.url(), "\n[dev]\nallow_all = true\n");
    let mut gw = ServeChild::start(dir.path(), "gw", &text).await;
    let request = |name: &str| {
        format!("GET /api/declare/{name} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
    };
    let mut waiting = tokio::net::TcpStream::connect(gw.public).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // accepted, reading the first bytes
    gw.signal("STOP");
    let mut queued = Vec::new();
    for i in 0..6 {
        let mut s = tokio::net::TcpStream::connect(gw.public).await.unwrap();
        s.write_all(request(&format!("queued-{i}")).as_bytes())
            .await
            .unwrap();
        queued.push(s);
    }
    gw.signal("TERM");
    gw.signal("CONT");
    tokio::time::sleep(Duration::from_millis(300)).await; // the drain has begun
    // Written after the signal, on a connection accepted before it.
    let _ = waiting.write_all(request("waiting").as_bytes()).await;
    let mut answers = Vec::new();
    for (name, mut s) in std::iter::once(("waiting".to_string(), waiting)).chain(
        queued
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("queued-{i}"), s)),
    ) {
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        answers.push((name, read.map(|r| r.map(|_| ())), text));
    }
    let failed: Vec<_> = answers
        .iter()
        .filter(|(_, read, text)| !matches!(read, Ok(Ok(()))) || !text.starts_with("HTTP/1.1 200"))
        .collect();
    let log = std::fs::read_to_string(dir.path().join("gw.log")).unwrap_or_default();
    assert!(
        failed.is_empty(),
        "{} of {} waiting requests not answered 200: {failed:?}\ngateway log:\n{log}",
        failed.len(),
        answers.len()
    );
    let exited = gw.child.wait().unwrap();
    assert!(exited.success(), "{exited:?}\n{log}");
    let mut seen: Vec<String> = drain_seen(&mut up)
        .into_iter()
        .map(|s| s.path_and_query)
        .collect();
    seen.sort();
    assert_eq!(seen.len(), 7, "{seen:?}");
}

/// 一号一人 under SIGKILL: a phone number is moved between two persons through
/// `POST /account/phone` + `/account/phone/verify`, and the real binary is killed with SIGKILL
/// at a different moment of each verify. After every kill the store holds the state from
/// before the transfer or the one after it, never a mix: at most one person has the number,
/// the previous holder lost it exactly when the mover got it, the mover's old number is gone
/// only then, and a verify answered 204 always stuck.
#[tokio::test]
async fn phone_transfers_killed_mid_way_leave_all_or_nothing() {
    const ROUNDS: u32 = 20;
    const NUMBER: &str = "13700000001";
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        dir.path(),
        "http://127.0.0.1:9",
        "\n[login]\nsms_resend_secs = 0\nsms_daily_limit = 1000\n",
    );
    migrate_and_import(dir.path(), &text, &seed_json());
    let sqlite = format!("sqlite://{}", dir.path().join("taxgate.db").display());
    let outbox = dir.path().join("sms-outbox.jsonl");
    let last_code = |to: &str| {
        std::fs::read_to_string(&outbox)
            .unwrap()
            .lines()
            .rev()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|m| m["to"] == to)
            .and_then(|m| m["code"].as_str().map(String::from))
            .unwrap()
    };
    let post = |addr: std::net::SocketAddr, path: &str, body: serde_json::Value, token: &str| {
        let mut req = Request::post(path)
            .header("host", "gw.test")
            .header("content-type", "application/json");
        if !token.is_empty() {
            req = req.header("cookie", format!("taxgate_session={token}"));
        }
        try_send(addr, req.body(full(body.to_string())).unwrap())
    };

    // Sessions are in the store: log both persons in once (自然人业务), use them every round.
    let mut gw = ServeChild::start(dir.path(), "gw0", &text).await;
    let mut tokens = Vec::new();
    for (id, pw, phone) in [
        (WANG, WANG_PW, "13800138000"),
        (ZHOU, ZHOU_PW, "13900000006"),
    ] {
        let login = post(
            gw.public,
            "/auth/login",
            json!({"entry": "person", "account": id, "password": pw}),
            "",
        )
        .await
        .unwrap();
        assert_eq!(login.status, StatusCode::OK);
        let challenge = login.json()["challenge"].as_str().unwrap().to_string();
        let sent = post(
            gw.public,
            "/auth/sms/send",
            json!({"challenge": challenge}),
            "",
        )
        .await
        .unwrap();
        assert_eq!(sent.status, StatusCode::OK);
        let verified = post(
            gw.public,
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": last_code(phone)}),
            "",
        )
        .await
        .unwrap();
        assert_eq!(verified.status, StatusCode::OK);
        tokens.push((IdNumber::parse(id).unwrap(), session_token(&verified)));
    }

    let phones = || async {
        let store = taxgate_store::AnyStore::connect(&sqlite).await.unwrap();
        let mut out = Vec::new();
        for (id, _) in &tokens {
            let p = store.person(id).await.unwrap().unwrap();
            out.push(p.phone.map(|p| p.as_str().to_string()));
        }
        let holder = store.person_by_account(NUMBER).await.unwrap();
        (out, holder.map(|p| p.id_number))
    };
    let (mut committed, mut answered, mut unchanged) = (0, 0, 0);
    // Round 0 is not killed: it measures how long a verify takes here (T). Round 1 is killed at
    // once, the others from T/4 to about 5.7 T after the verify was sent, each 19 % later than
    // the one before (a fresh process is slower than the warm one T was measured on).
    let mut verify_time = Duration::ZERO;
    for round in 0..=ROUNDS {
        if round > 1 {
            gw = ServeChild::start(dir.path(), &format!("gw{round}"), &text).await;
        }
        let (before, _) = phones().await;
        // The mover is whoever does not hold the number.
        let mover = usize::from(before[0].as_deref() == Some(NUMBER));
        let start = post(
            gw.public,
            "/account/phone",
            json!({"phone": NUMBER}),
            &tokens[mover].1,
        )
        .await
        .unwrap();
        assert_eq!(start.status, StatusCode::OK, "round {round}");
        let challenge = start.json()["challenge"].as_str().unwrap().to_string();
        let code = last_code(NUMBER);
        let addr = gw.public;
        let token = tokens[mover].1.clone();
        let sent_at = Instant::now();
        let verify = tokio::spawn(async move {
            post(
                addr,
                "/account/phone/verify",
                json!({"challenge": challenge, "code": code}),
                &token,
            )
            .await
        });
        let kill_after = match round {
            0 | 1 => Duration::ZERO,
            r => verify_time.mul_f64(2f64.powf(f64::from(r - 2) / 4.0 - 2.0)),
        };
        let answer = if round == 0 {
            let answer = verify.await.unwrap();
            verify_time = sent_at.elapsed();
            assert_eq!(answer.as_ref().unwrap().status, StatusCode::NO_CONTENT);
            answer
        } else {
            // A different moment each round: before, inside and after the transaction.
            tokio::time::sleep(kill_after).await;
            gw.child.kill().unwrap(); // SIGKILL
            let _ = gw.child.wait();
            verify.await.unwrap()
        };
        let got_204 = matches!(&answer, Ok(a) if a.status == StatusCode::NO_CONTENT);

        let mut after = before.clone();
        after[mover] = Some(NUMBER.to_string());
        if after[1 - mover].as_deref() == Some(NUMBER) {
            after[1 - mover] = None;
        }
        let (now, holder) = phones().await;
        assert!(
            now == before || now == after,
            "round {round}: a partial transfer: before {before:?}, now {now:?}, expected that or {after:?}"
        );
        assert_eq!(
            holder.as_ref(),
            (now.iter().position(|p| p.as_deref() == Some(NUMBER))).map(|i| &tokens[i].0),
            "round {round}: the number's holder by lookup differs from the persons' rows"
        );
        if got_204 {
            assert_eq!(now, after, "round {round}: answered 204 but not stored");
        }
        if round == 0 {
            assert_eq!(now, after, "the unkilled transfer");
            eprintln!("round 0 (not killed): the verify took {verify_time:?}");
            continue;
        }
        answered += usize::from(got_204);
        if now == after {
            committed += 1;
        } else {
            unchanged += 1;
        }
        eprintln!(
            "round {round}: killed after {:?}: {} ({})",
            kill_after,
            if now == after { "moved" } else { "not moved" },
            match &answer {
                Ok(a) => a.status.to_string(),
                Err(e) => format!("{e:?}"),
            }
        );
    }
    eprintln!(
        "{ROUNDS} kills: {committed} transfers stored ({answered} of them answered 204), {unchanged} left as before"
    );
    // Every stored transfer has its record, even those whose process died right after the
    // commit: the events are written in the transfer's transaction.
    let db = dir.path().join("taxgate.db");
    let bound = std::process::Command::new("python3")
        .args([
            "-c",
            &format!(
                "import sqlite3;print(sqlite3.connect('{}').execute(\"select count(*) from audit_events where action = 'phone_bound'\").fetchone()[0])",
                db.display()
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&bound.stdout).trim(),
        (committed + 1).to_string(),
        "phone_bound events vs stored transfers (round 0 included): {bound:?}"
    );
    assert!(
        committed > 0 && unchanged > 0,
        "every kill landed on the same side: the test proved little"
    );
    // The gateway still works on the state left behind.
    let gw = ServeChild::start(dir.path(), "final", &text).await;
    let (now, _) = phones().await;
    let holder = now.iter().position(|p| p.as_deref() == Some(NUMBER));
    if let Some(i) = holder {
        let other = 1 - i;
        let take = post(
            gw.public,
            "/account/phone",
            json!({"phone": NUMBER}),
            &tokens[other].1,
        )
        .await
        .unwrap();
        assert_eq!(take.status, StatusCode::OK);
    }
    drop(gw);
}
