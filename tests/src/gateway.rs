//! Gateways without the login fixtures: the server type started in this process ([`Gateway`]),
//! and the real `taxgate` binary (`serve` as a child process, `migrate` and `import`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};

use taxgate_gateway::config::Config;
use taxgate_gateway::run;
use taxgate_gateway::server::{Core, Shutdown};
use taxgate_store::{IdNumber, Person, Store as _};

use crate::client::{empty, try_send};

/// A gateway running in this process, fully wired (login, account centre, pages).
pub struct Gateway {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    /// `[ext_authz] listen` and `grpc_listen`, when the config has them.
    pub ext: Option<SocketAddr>,
    pub ext_grpc: Option<SocketAddr>,
    pub core: Arc<Core>,
    pub shutdown: Shutdown,
    pub done: tokio::task::JoinHandle<()>,
}

impl Gateway {
    pub async fn start(config_text: &str, dir: &Path) -> Gateway {
        let config = Config::from_toml(config_text, "test.toml", dir)
            .unwrap_or_else(|e| panic!("test config refused: {e}"));
        let shutdown = Shutdown::new();
        let server = run::serve(config, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
        let public = server.public_addr();
        let admin = server.admin_addr();
        let (ext, ext_grpc) = (server.ext_addr(), server.ext_grpc_addr());
        let core = server.core().clone();
        let done = tokio::spawn(server.run(shutdown.clone()));
        Gateway {
            public,
            admin,
            ext,
            ext_grpc,
            core,
            shutdown,
            done,
        }
    }

    /// The stored person `id_number` (who must exist), as the store has it now.
    pub async fn person(&self, id_number: &str) -> Person {
        let id = IdNumber::parse(id_number).unwrap();
        self.core.store.person(&id).await.unwrap().unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.done).await;
    }
}

/// The `taxgate` binary built for these tests (`target/<profile>/taxgate`). `cargo test
/// --workspace` builds it (the gateway package's own integration test needs it); running this
/// crate alone needs `cargo build -p taxgate` first. Building it from here would deadlock on
/// cargo's lock, which the running `cargo test` holds.
pub fn taxgate_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("taxgate");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace`, or `cargo build -p taxgate` first",
        bin.display()
    );
    bin
}

/// A `taxgate serve` child process, killed when dropped.
pub struct ServeChild {
    pub child: std::process::Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeChild {
    /// Start the real binary with `config` (its two `127.0.0.1:0` listens replaced by free
    /// ports) and wait until the admin listener answers.
    pub async fn start(dir: &Path, name: &str, config: &str) -> ServeChild {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let (public, admin) = (free(), free());
        let text = config
            .replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{public}\""),
                1,
            )
            .replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{admin}\""),
                1,
            );
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(&cfg, text).unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = std::process::Command::new(taxgate_bin())
            .args(["serve", "--config"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let me = ServeChild {
            child,
            public,
            admin,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while get_ok(admin, "/readyz").await.is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "taxgate {name} did not start; its log:\n{}",
                std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        me
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// `GET path` answered 200, or `None` (including when nothing listens).
async fn get_ok(addr: SocketAddr, path: &str) -> Option<()> {
    let req = Request::get(path).body(empty()).unwrap();
    match try_send(addr, req).await {
        Ok(a) if a.status == StatusCode::OK => Some(()),
        _ => None,
    }
}

/// Write `config` to `dir/taxgate.toml` and `seed` beside it, then run the real binary's
/// `migrate` and `import` on them; returns the config's path.
pub fn migrate_and_import(dir: &Path, config: &str, seed: &serde_json::Value) -> PathBuf {
    let cfg = dir.join("taxgate.toml");
    std::fs::write(&cfg, config).unwrap();
    let seed_path = dir.join("seed.json");
    std::fs::write(&seed_path, seed.to_string()).unwrap();
    for args in [&["migrate", "--config"][..], &["import", "--config"][..]] {
        let mut cmd = std::process::Command::new(taxgate_bin());
        cmd.args(args).arg(&cfg);
        if args[0] == "import" {
            cmd.arg(&seed_path);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    cfg
}
