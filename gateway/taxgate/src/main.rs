//! The `taxgate` command line (CONTRACT section 1). Exit status: 0 success, 1 user error (bad
//! config, bad input, failed validation), 2 usage error.

/// mimalloc instead of glibc malloc: each proxied request allocates and frees a few dozen small
/// objects across two worker threads and the audit writer, and glibc spent about 8% of the
/// gateway's CPU on them (malloc, free, consolidation; benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod commands;
mod demo;

use clap::{Parser, Subcommand};
use taxgate_gateway::config::Config;
use taxgate_gateway::server::{Shutdown, open_store, termination_signal};
use taxgate_gateway::telemetry::Telemetry;

#[derive(Parser)]
#[command(
    name = "taxgate",
    version,
    about = "Authorization gateway for the e-tax personal login, deciding every request with Cedar policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (applies pending store migrations first).
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// One-command demo: SQLite under ./demo-data/, the repo's policies/, a sample e-tax backend,
    /// demo accounts, SMS codes printed here.
    Demo {
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Apply store migrations and exit.
    Migrate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Upsert persons, enterprises, bindings and agency agreements from a seed file; all or
    /// nothing.
    Import {
        #[arg(long)]
        config: PathBuf,
        seed: PathBuf,
    },
    /// Work with the policy set.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Manage the keys that sign identity assertions for upstreams.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new PKCS#8 private key (mode 0600) and print its kid and public JWK.
    Generate {
        /// `EdDSA` (Ed25519) or `ES256` (ECDSA P-256).
        #[arg(long, default_value = "EdDSA")]
        algorithm: taxgate_gateway::assertion::Algorithm,
        /// Where to write the key, e.g. keys/assertion.pem.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Parse every policy and validate it against the schema (strict).
    Validate {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
    },
    /// Run the policy test cases in DIR/tests/.
    Test {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Also list how many cases each policy determined, and the policies none did.
        #[arg(long)]
        coverage: bool,
    },
    /// Re-decide recorded downstream decisions with a candidate set and report every flip.
    /// Exit 0: no deny→allow flip; 1: widening found (unless --allow-widening); 2: error.
    Replay {
        #[arg(long)]
        config: PathBuf,
        /// The candidate policy directory.
        #[arg(long)]
        candidate: PathBuf,
        /// How far back: a duration (`24h`, `7d`, `90m`) or an RFC 3339 time.
        #[arg(long, default_value = "7d")]
        since: String,
        /// Replay at most this many decisions, the most recent first.
        #[arg(long, default_value_t = 100_000)]
        limit: u32,
        /// Exit 0 even when the candidate allows something recorded as denied.
        #[arg(long)]
        allow_widening: bool,
        /// One JSON object instead of text (for CI).
        #[arg(long)]
        json: bool,
    },
    /// Per policy of the configured set: the decisions it determined in the last N days, and
    /// the policies that never fired.
    Coverage {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long)]
        json: bool,
    },
    /// Decide one test case and show the determining policies and reason.
    Explain {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        case: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(&config).await,
            Command::Demo { port } => demo(port).await,
            Command::Migrate { config } => migrate(&config).await,
            Command::Import { config, seed } => import(&config, &seed).await,
            Command::Policy { command } => policy(command).await,
            Command::Keys { command } => keys(command),
        }
    })
}

/// Logs to stderr (`RUST_LOG`, default `info`), and the trace spans to the OTLP exporter when
/// `[telemetry] otlp_endpoint` is set. The spans meant for export never reach the log output.
fn init_logs(json: bool, telemetry: Option<&Telemetry>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if let Ok(directive) = taxgate_gateway::telemetry::LOG_DIRECTIVE.parse() {
        filter = filter.add_directive(directive);
    }
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(telemetry.and_then(Telemetry::layer))
        .try_init();
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    })
}

async fn serve(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let telemetry = match Telemetry::start(&config.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    init_logs(config.server.log_format == "json", Some(&telemetry));
    let shutdown = Shutdown::new();
    match taxgate_gateway::run::serve(config, shutdown.clone()).await {
        Ok(server) => {
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                termination_signal().await;
                tracing::info!("termination signal received");
                trigger.trigger();
            });
            server.run(shutdown).await;
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
            tracing::info!("taxgate stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}

async fn demo(port: u16) -> ExitCode {
    init_logs(false, None);
    let backend = match demo::start_backend().await {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("error: cannot start the sample upstream: {e}");
            return ExitCode::from(1);
        }
    };
    let config = match demo::prepare(port, Path::new("demo-data"), backend) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let admin_port = config.admin.listen.port();
    let shutdown = Shutdown::new();
    let server = match taxgate_gateway::run::serve(config, shutdown.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: taxgate demo: {e} (is port {port} or {admin_port} in use? try --port)"
            );
            return ExitCode::from(1);
        }
    };
    let seed = demo::seed().to_string();
    if let Err(e) = taxgate_store::import_seed(
        &server.core().store,
        &seed,
        taxgate_gateway::pipeline::unix_now(),
    )
    .await
    {
        eprintln!("error: cannot import the demo accounts: {e}");
        return ExitCode::from(1);
    }
    println!("{}", demo::banner(port, admin_port));
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        termination_signal().await;
        trigger.trigger();
    });
    server.run(shutdown).await;
    ExitCode::SUCCESS
}

async fn migrate(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match open_store(&config).await {
        Ok(store) => {
            println!("migrations applied ({})", store.backend());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}

async fn import(path: &Path, seed: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let text = match std::fs::read_to_string(seed) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: cannot read the seed file: {e}", seed.display());
            return ExitCode::from(1);
        }
    };
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let now = taxgate_gateway::pipeline::unix_now();
    match taxgate_store::import_seed(&store, &text, now).await {
        Ok(summary) => {
            println!("imported {}: {summary}", seed.display());
            ExitCode::SUCCESS
        }
        Err(taxgate_store::ImportError::Rows(rows)) => {
            for row in &rows {
                eprintln!("error: {}: {row}", seed.display());
            }
            eprintln!(
                "{} bad row(s) in {}; nothing was imported",
                rows.len(),
                seed.display()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {}: {e}", seed.display());
            ExitCode::from(1)
        }
    }
}

fn keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Generate {
            algorithm,
            out,
            force,
        } => match taxgate_gateway::assertion::write_new_key(&out, algorithm, force) {
            Ok(key) => {
                let jwk = serde_json::to_string_pretty(key.jwk()).unwrap_or_default();
                println!("wrote {} ({algorithm}, mode 0600)", out.display());
                println!("kid: {}", key.kid());
                println!("public JWK:\n{jwk}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
    }
}

async fn policy(command: PolicyCommand) -> ExitCode {
    let (out, ok) = match command {
        PolicyCommand::Validate { policies } => taxgate_policy::commands::validate(&policies),
        PolicyCommand::Test { policies, coverage } => {
            taxgate_policy::commands::test_with(&policies, coverage)
        }
        PolicyCommand::Replay {
            config,
            candidate,
            since,
            limit,
            allow_widening,
            json,
        } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let (out, err, code) =
                commands::replay(&config, &candidate, &since, limit, allow_widening, json).await;
            print!("{out}");
            eprint!("{err}");
            return ExitCode::from(code);
        }
        PolicyCommand::Coverage { config, days, json } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let (out, err, ok) = commands::coverage(&config, days, json).await;
            print!("{out}");
            eprint!("{err}");
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        PolicyCommand::Explain { policies, case } => {
            taxgate_policy::commands::explain(&policies, &case)
        }
    };
    if ok {
        print!("{out}");
        ExitCode::SUCCESS
    } else {
        eprint!("{out}");
        ExitCode::from(1)
    }
}
