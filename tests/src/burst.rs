//! Bursts released at one instant: many requests, each on its own connection, whose last bytes
//! are written together, for limits under concurrency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// One POST of a [`burst`]: the instance it goes to, the path, the JSON body and a session.
#[derive(Clone)]
pub struct BurstRequest {
    pub addr: SocketAddr,
    pub path: String,
    pub body: serde_json::Value,
    pub session: Option<String>,
}

/// What one request of a burst got: the status, the `Retry-After` header and the JSON body.
#[derive(Debug, Clone)]
pub struct BurstAnswer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub json: serde_json::Value,
}

impl BurstAnswer {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

/// Send every request at the same instant, each on its own connection: first everything but the
/// last byte of each, then, once every connection holds all but one byte (a barrier), every last
/// byte together. Answers come back in the order of `requests`.
pub async fn burst(requests: Vec<BurstRequest>) -> Vec<BurstAnswer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|r| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let body = r.body.to_string();
                let cookie = r
                    .session
                    .map(|t| format!("cookie: taxgate_session={t}\r\n"))
                    .unwrap_or_default();
                let raw = format!(
                    "POST {} HTTP/1.1\r\nhost: gw.test\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n{cookie}\r\n{body}",
                    r.path,
                    body.len()
                );
                let (head, last) = raw.as_bytes().split_at(raw.len() - 1);
                let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                s.write_all(head).await.unwrap();
                barrier.wait().await;
                s.write_all(last).await.unwrap();
                let mut out = Vec::new();
                tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out))
                    .await
                    .expect("an answer within 60 s")
                    .unwrap();
                parse_burst_answer(&out)
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

fn parse_burst_answer(raw: &[u8]) -> BurstAnswer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    BurstAnswer {
        status,
        retry_after: header("retry-after"),
        json: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    }
}

/// How many answers of a burst had this status and error code (`""`: any, or none).
pub fn count_answers(answers: &[BurstAnswer], status: u16, code: &str) -> usize {
    answers
        .iter()
        .filter(|a| a.status == status && (code.is_empty() || a.code() == code))
        .count()
}
