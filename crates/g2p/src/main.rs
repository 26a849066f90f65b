//! The `g2p` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use g2p::{App, Config, demo, shutdown_signal, telemetry};
use g2p_domain::Role;
use g2p_store::audit::Actor;

#[derive(Parser)]
#[command(
    name = "g2p",
    version,
    about = "g2p: a beneficiary registry for social-protection programmes.",
    long_about = "g2p: a beneficiary registry for social-protection programmes.\n\n\
    Configuration comes from defaults, then g2p.toml (or --config), then G2P_* environment \
    variables, e.g. G2P_DATABASE_URL=postgres://postgres@127.0.0.1/g2p. Secrets can be read \
    from files: G2P_SESSION_SECRET_FILE, G2P_DATABASE_URL_FILE."
)]
struct Cli {
    /// Configuration file (default: ./g2p.toml if present; also G2P_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Database URL, overriding the configuration (sqlite://FILE or postgres://…).
    #[arg(long, global = true, env = "G2P_DATABASE_URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and the console (and run background jobs unless run_worker = false).
    Serve {
        /// Listen address, e.g. 0.0.0.0:8080 (default from configuration: 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run background jobs (no HTTP). Start several, on several nodes, against one PostgreSQL.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// MOSIP Token Seeder compatible service (with the mock authenticator).
    Mts {
        #[command(subcommand)]
        command: g2p::sims::MtsCommand,
    },
    /// Simulators of external systems, for demos and tests.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Administration tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Create (once) an embedded SQLite registry of ~1,000 synthetic registrants, tokenise it
    /// through the Registry MTS Connector against g2p mts running in-process, and serve it.
    Demo {
        /// Listen address for the demo (default 127.0.0.1:8080; with --once, a free port).
        #[arg(long)]
        listen: Option<String>,
        /// The demo database file (its secret key file is made next to it).
        #[arg(long, default_value = "g2p-demo.sqlite")]
        file: PathBuf,
        /// Number of individuals to generate on first start.
        #[arg(long, default_value_t = 1000)]
        individuals: usize,
        /// Do not serve: wait for the tokenisation run, print a summary and exit (status 0 when
        /// the run completed and every record sent came back tokenised or failed, 2 otherwise).
        #[arg(long)]
        once: bool,
        /// With --once: print the summary as one JSON object on stdout (logs go to stderr).
        #[arg(long, requires = "once")]
        json: bool,
        /// With --once: seconds to wait for the tokenisation run to complete.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Import registrants from a CSV or NDJSON file (idempotent by external_key). Exit status
    /// 0: all rows created or skipped; 2: some rows failed (listed); 1: the import failed.
    Import(g2p::import::ImportArgs),
    /// Benchmarks; build with --release first.
    Bench {
        #[command(subcommand)]
        command: g2p::bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// Serve an ODK Central simulator (sessions, forms, OData submissions).
    Odk(g2p::sims::OdkSimArgs),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an API key and print it (it is shown only this once).
    CreateKey {
        /// admin, registrar, viewer or connector.
        #[arg(long)]
        role: String,
        /// A name to recognise the key by (who or what uses it).
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `g2p mts` is a product of its own, with its own settings (g2p-mts.toml, G2P_MTS_*): g2p's
    // configuration is not read, and its jq worker must start nothing but itself.
    if let Command::Mts { command } = cli.command {
        return g2p::sims::mts_main(command, cli.config.as_deref());
    }
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(db) = cli.database {
        cfg.database_url = db;
    }
    // `demo --once` prints one summary; its progress logs would only be noise.
    let quiet = matches!(&cli.command, Command::Demo { once: true, .. });
    telemetry::init_logging(&cfg.log_format, quiet);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run(cli.command, cfg))
}

async fn run(command: Command, mut cfg: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { listen } => {
            if let Some(l) = listen {
                cfg.listen = l;
            }
            let app = App::start(&cfg, telemetry::init_metrics()).await?;
            tracing::info!(url = %app.url(), database = %cfg.database_url_redacted(), "g2p serving");
            shutdown_signal().await;
            tracing::info!("shutting down");
            app.stop().await;
        }
        Command::Worker => {
            tracing::info!(database = %cfg.database_url_redacted(), "g2p worker starting");
            g2p::run_worker(&cfg).await?;
        }
        Command::Mts { .. } => anyhow::bail!("g2p mts runs before the configuration is read"),
        Command::Sim {
            command: SimCommand::Odk(args),
        } => g2p::sims::odk_sim(args).await?,
        Command::Migrate => {
            let store = g2p::open_store(&cfg).await?;
            store.close().await;
            println!("database {} is up to date", cfg.database_url_redacted());
        }
        Command::Admin {
            command: AdminCommand::CreateKey { role, name },
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!("unknown role {role:?}: use admin, registrar, viewer or connector")
            })?;
            let store = g2p::open_store(&cfg).await?;
            let (info, key) = store
                .create_api_key(&name, role, &Actor::system("cli"))
                .await?;
            store.close().await;
            println!("{key}");
            eprintln!(
                "created {} key {:?} (id {}); it is shown only once",
                info.role, info.name, info.key_id
            );
        }
        Command::Demo {
            listen,
            file,
            individuals,
            once,
            json,
            timeout,
        } => {
            cfg.database_url = format!("sqlite://{}", file.display());
            cfg.listen = listen.unwrap_or_else(|| {
                if once {
                    "127.0.0.1:0"
                } else {
                    "127.0.0.1:8080"
                }
                .to_owned()
            });
            let opts = demo::DemoOptions {
                individuals,
                once,
                json,
                timeout: std::time::Duration::from_secs(timeout),
            };
            let status = demo::run(cfg, opts).await?;
            if status != 0 {
                std::process::exit(status);
            }
        }
        Command::Import(args) => {
            let store = g2p::open_store(&cfg).await?;
            let status = g2p::import::run(&store, &args, &mut std::io::stdout()).await;
            store.close().await;
            let status = status?;
            if status != 0 {
                std::process::exit(status);
            }
        }
        Command::Bench { command } => g2p::bench::run(command).await?,
    }
    Ok(())
}
