//! Shared pieces of the load tools (`src/bin/`).

use std::time::Duration;

use hyper::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// The runtime the store benches call the store from: one worker, as a request's task, with
/// the store's own threads beside it.
pub fn store_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// The `p` quantile (0..=1) of ascending `sorted` values, nearest rank; 0 when empty.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Microseconds of `d`, saturated to `u32`.
pub fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// A keep-alive HTTP/1.1 connection (no Nagle) to `url`'s host and port, its driver spawned.
pub async fn connect_h1<B>(url: &http::Uri) -> Result<SendRequest<B>, String>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = format!(
        "{}:{}",
        url.host().unwrap_or("127.0.0.1"),
        url.port_u16().unwrap_or(80)
    );
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A downstream decision event as the gateway writes it (the 64-character policy version, the
/// determining policy, the client address), for the audit benches.
pub fn decision_event(id: String, at: i64, session: String) -> taxgate_store::AuditEvent {
    let person = taxgate_store::IdNumber::parse("140105199001011238").ok();
    let enterprise = taxgate_store::TaxpayerId::parse("91140100MA0K123488").ok();
    taxgate_store::AuditEvent {
        request_id: Some(id.clone()),
        id,
        at,
        session_id: Some(session),
        person,
        enterprise,
        role: Some(taxgate_store::Role::LegalRepresentative),
        entry: Some(taxgate_store::Entry::Enterprise),
        action: "declare".into(),
        path: Some("/api/declare/2026-10/vat".into()),
        allowed: true,
        policies: vec!["enterprise-bound-roles".into()],
        reason: None,
        policy_version: Some(format!("{:064x}", 0xfeed_u64)),
        client_addr: Some("10.1.2.3".into()),
        detail: None,
        slice: None,
        legacy_login_until: Some(at + 86_400 * 90),
    }
}
