//! Make N live sessions as real logins would leave them, fast (issue 17): migrate an empty
//! SQLite or PostgreSQL store, fill it with the bulk population of the fixtures (enterprises
//! with their legal representative, finance manager, tax handlers and invoice clerks, agents
//! acting for clients through agency agreements, person-entry sessions; see
//! `taxgate_store::fixtures::population_session`), optionally grow the audit table, and write
//! each session's bearer token with its kind (`e`, `a`, `p`) to a file, one `TOKEN KIND` a line.
//! Tokens are random like the gateway's (256 bits, base64url); the store keeps only their
//! SHA-256. The sessions logged in during the five minutes before the fill and expire after
//! 30 idle minutes (the default `idle_timeout_secs`): run the load within that time.
//!
//! Usage: population --store sqlite:///tmp/p.db --sessions 100000 --tokens /tmp/p.tokens
//!        [--audit-rows 10000000]
//! Prints one JSON line of counts and timings.

use std::io::Write;
use std::time::Instant;

use taxgate_gateway::authn::token;
use taxgate_store::fixtures::population_kind;
use taxgate_store::{AnyStore, Store};

struct Args {
    store: String,
    sessions: u64,
    tokens: String,
    audit_rows: u64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        store: String::new(),
        sessions: 1,
        tokens: String::new(),
        audit_rows: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--store" => a.store = val()?,
            "--sessions" => a.sessions = val()?.parse().map_err(|e| format!("--sessions: {e}"))?,
            "--tokens" => a.tokens = val()?,
            "--audit-rows" => {
                a.audit_rows = val()?.parse().map_err(|e| format!("--audit-rows: {e}"))?
            }
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    if a.store.is_empty() || a.tokens.is_empty() || a.sessions == 0 {
        return Err("--store and --tokens are required, --sessions must be positive".into());
    }
    Ok(a)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn run(args: &Args) -> Result<String, String> {
    let started = Instant::now();
    let store = AnyStore::connect(&args.store)
        .await
        .map_err(|e| format!("store: {e}"))?;
    store.migrate().await.map_err(|e| format!("migrate: {e}"))?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.tokens).map_err(|e| format!("`{}`: {e}", args.tokens))?,
    );
    let mut hashes = Vec::with_capacity(args.sessions as usize);
    for i in 0..args.sessions {
        let t = token::new_token().map_err(|e| format!("token: {e}"))?;
        writeln!(out, "{t} {}", population_kind(i).letter()).map_err(|e| e.to_string())?;
        hashes.push(token::hash(&t));
    }
    out.flush().map_err(|e| e.to_string())?;
    let now = unix_now();
    store
        .bulk_population(&hashes, now)
        .await
        .map_err(|e| format!("population: {e}"))?;
    let sessions_secs = started.elapsed().as_secs_f64();
    let audit_started = Instant::now();
    if args.audit_rows > 0 {
        store
            .bulk_audit(args.audit_rows, now)
            .await
            .map_err(|e| format!("audit: {e}"))?;
    }
    let audit = store
        .count_audit()
        .await
        .map_err(|e| format!("count: {e}"))?;
    Ok(format!(
        "{{\"sessions\":{},\"audit_rows\":{audit},\"sessions_secs\":{sessions_secs:.1},\"audit_secs\":{:.1}}}",
        args.sessions,
        audit_started.elapsed().as_secs_f64()
    ))
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("population: {e}");
            std::process::exit(2);
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    else {
        std::process::exit(1);
    };
    match rt.block_on(run(&args)) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("population: {e}");
            std::process::exit(1);
        }
    }
}
