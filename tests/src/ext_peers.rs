//! The real proxies of the external-authorization tests (issue 18): nginx with `auth_request`
//! and Caddy with `forward_auth` (both from Debian), each started on loopback from a config the
//! test writes, and stopped when dropped. Missing binaries skip the test unless
//! `TAXGATE_REQUIRE_NGINX` / `TAXGATE_REQUIRE_CADDY` say they must be there (CI).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::faults::eventually;

/// A free loopback port (bound and released: the peer binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find(bins: &[&str], require_var: &str, package: &str) -> Option<PathBuf> {
    let found = bins.iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os(require_var).is_none(),
            "{require_var} is set but {package} is not installed (apt-get install {package})"
        );
        eprintln!("skipping: {package} is not installed");
    }
    found
}

/// A proxy process listening on `port`; killed on drop.
pub struct Peer {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Peer {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The peer's own log (nginx's error log, Caddy's output), for failure messages.
    pub fn log(&self) -> String {
        ["error.log", "caddy.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.path().join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn wait_listening(self) -> Peer {
        let port = self.port;
        eventually(Duration::from_secs(15), "proxy listening", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        self
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx (Debian) with `http_block` as the body of its `http { }`; `{port}` in it is replaced by
/// the port it listens on. `None`: not installed (skip).
pub async fn start_nginx(http_block: &str) -> Option<Peer> {
    let bin = find(
        &["/usr/sbin/nginx", "/usr/bin/nginx"],
        "TAXGATE_REQUIRE_NGINX",
        "nginx-light",
    )?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
error_log {d}/error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{body}
}}
"#,
        body = http_block.replace("{port}", &port.to_string())
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(Peer { child, port, dir }.wait_listening().await)
}

/// Caddy (Debian) running `caddyfile`; `{port}` in it is replaced by the port it listens on
/// (global options turning off the admin API, automatic HTTPS and the user's storage are
/// added). `None`: not installed (skip).
pub async fn start_caddy(caddyfile: &str) -> Option<Peer> {
    let bin = find(
        &["/usr/bin/caddy", "/usr/local/bin/caddy"],
        "TAXGATE_REQUIRE_CADDY",
        "caddy",
    )?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = format!(
        "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {d}\n}}\n{body}",
        d = dir.path().display(),
        body = caddyfile.replace("{port}", &port.to_string())
    );
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, text).unwrap();
    let out = std::fs::File::create(dir.path().join("caddy.log")).unwrap();
    let child = Command::new(bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Some(Peer { child, port, dir }.wait_listening().await)
}
