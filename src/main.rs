//! The `statsyard` command: arguments → [`Config`] → [`server::run`] → exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use statsyard::config::{Config, LogConfig};
use statsyard::server;

/// A StatsD- and Graphite-compatible metrics aggregation server.
///
/// With no config it runs the embedded default: statsd on UDP and TCP
/// 0.0.0.0:8125, a 10 s flush, every flush printed to stdout.
#[derive(Debug, Parser)]
#[command(name = "statsyard", version, about, long_about)]
struct Cli {
    /// A statsyard TOML config file.
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        conflicts_with = "statsd_config"
    )]
    config: Option<PathBuf>,

    /// A config.js of the reference statsd, loaded as it is.
    #[arg(long, value_name = "FILE")]
    statsd_config: Option<PathBuf>,

    /// Serve HTTP on this address (IP:port), or `off`; overrides `[http] address`.
    #[arg(long, value_name = "ADDR")]
    http_address: Option<String>,

    /// Serve the admin console on this address (IP:port), or `off`;
    /// overrides `[admin] address` and config.js `mgmt_*`.
    #[arg(long, value_name = "ADDR")]
    admin_address: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

/// `--http-address` / `--admin-address`: `off`, or an IP:port.
fn override_addr(
    flag: &str,
    value: &Option<String>,
    target: &mut Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    match value.as_deref() {
        None => {}
        Some("off") => *target = None,
        Some(v) => {
            *target = Some(
                v.parse()
                    .with_context(|| format!("{flag} {v:?}: expected IP:port or off"))?,
            )
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file and exit: 0 if it is usable, 1 if not.
    ///
    /// Files ending in .js are read as the reference statsd's config.js,
    /// anything else as statsyard TOML.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("statsyard: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::CheckConfig { file }) = &cli.command {
        let config = load_by_extension(file)?;
        for w in &config.warnings {
            eprintln!("statsyard: warning: {}: {w}", file.display());
        }
        println!("{}: ok", file.display());
        return Ok(ExitCode::SUCCESS);
    }

    let mut config = match (&cli.config, &cli.statsd_config) {
        (Some(path), _) => Config::load_toml(path)?,
        (None, Some(path)) => Config::load_statsd_js(path)?,
        (None, None) => Config::embedded(),
    };
    override_addr("--http-address", &cli.http_address, &mut config.http)?;
    override_addr("--admin-address", &cli.admin_address, &mut config.admin)?;
    init_logging(&config.log)?;
    tracing::info!(config = %config.source, version = env!("CARGO_PKG_VERSION"), "starting");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("statsyard")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(server::run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn load_by_extension(path: &Path) -> anyhow::Result<Config> {
    let js = path.extension().is_some_and(|e| e == "js");
    Ok(if js {
        Config::load_statsd_js(path)?
    } else {
        Config::load_toml(path)?
    })
}

/// Logs go to stderr (stdout belongs to the console sink). `RUST_LOG`
/// overrides the configured level.
fn init_logging(log: &LogConfig) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v).context("bad RUST_LOG")?,
        _ => EnvFilter::try_new(&log.level)
            .with_context(|| format!("bad log level {:?}", log.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if log.json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}
