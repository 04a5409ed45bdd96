//! Fault injection and the raw wire: a fresh PostgreSQL database, a TCP relay a test can cut,
//! polling until a condition holds, and bytes written and read without an HTTP client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use taxgate_gateway::authn::token;

/// A fresh database on the test PostgreSQL server (`TAXGATE_TEST_PG_URL`), or `None` with a
/// notice when none is configured — unless `TAXGATE_REQUIRE_PG=1`, when that is a failure.
pub fn test_postgres_url() -> Option<String> {
    let Ok(base) = std::env::var("TAXGATE_TEST_PG_URL") else {
        assert!(
            std::env::var("TAXGATE_REQUIRE_PG").as_deref() != Ok("1"),
            "TAXGATE_REQUIRE_PG=1 but TAXGATE_TEST_PG_URL is unset"
        );
        eprintln!("skipping PostgreSQL: TAXGATE_TEST_PG_URL unset");
        return None;
    };
    let name = format!("e2e_{}", token::new_id().unwrap());
    let (admin, _) = base.rsplit_once('/').unwrap();
    let status = std::process::Command::new("psql")
        .arg(&base)
        .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql");
    assert!(status.success(), "cannot create a test database");
    Some(format!("{admin}/{name}"))
}

/// A TCP relay between the gateway and a server (the test PostgreSQL), which a test can cut:
/// `cut` closes every relayed connection and refuses new ones (accepts and closes them at once,
/// so the port stays ours), `restore` relays again.
pub struct Relay {
    pub addr: SocketAddr,
    down: Arc<std::sync::atomic::AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let (down2, gen2) = (down.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if down2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = gen2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                    // Dropping both ends closes them.
                });
            }
        });
        Relay {
            addr,
            down,
            generation,
        }
    }

    /// Close every relayed connection and refuse new ones.
    pub fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Host and port of a `postgres://user@host:port/db` URL.
pub fn pg_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let host_port = rest.split('/').next().unwrap();
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, hp)| hp);
    host_port.parse().unwrap()
}

/// `url` with its host and port replaced by `addr`.
pub fn pg_url_via(url: &str, addr: SocketAddr) -> String {
    let real = pg_addr(url);
    url.replacen(&real.to_string(), &addr.to_string(), 1)
}

/// Poll `check` every 20 ms until it returns `Some`, or panic with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Write `bytes` on a fresh connection and read until the peer closes or `idle` passes without
/// new bytes. Returns what was read and whether the peer closed.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], idle: Duration) -> (Vec<u8>, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The peer may close before everything is written (it refused the head): that is an answer.
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(idle, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// Status codes of every HTTP/1.1 response head in a raw byte stream, in order.
pub fn raw_statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12))
        .filter_map(|s| s.parse().ok())
        .collect()
}
