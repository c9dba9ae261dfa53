//! The `statsyard` command: arguments → [`Config`] → [`server::run`] → exit code.
//!
//! Imports the library's public API only ([`statsyard::config`],
//! [`statsyard::server`]).

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
#[derive(Debug, Clone, Parser)]
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
    #[arg(long, value_name = "ADDR", global = true)]
    http_address: Option<String>,

    /// Serve the admin console on this address (IP:port), or `off`;
    /// overrides `[admin] address` and config.js `mgmt_*`.
    #[arg(long, value_name = "ADDR", global = true)]
    admin_address: Option<String>,

    /// A Prometheus exporter-toolkit web config file (TLS, basic auth,
    /// headers) for the HTTP server; overrides `[http] web_config_file`.
    #[arg(long = "web.config.file", value_name = "FILE", global = true)]
    web_config_file: Option<PathBuf>,

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

#[derive(Debug, Clone, Subcommand)]
enum Command {
    /// Validate a config file and exit: 0 if it is usable, 1 if not.
    ///
    /// Files ending in .js are read as the reference statsd's config.js,
    /// anything else as statsyard TOML.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Run a carbon relay from flags alone (or test where names would go).
    ///
    /// `statsyard relay --listen 127.0.0.1:2003 --pickle-listen 127.0.0.1:2004
    /// --method carbon_ch --replication 2 HOST:PORT[:INSTANCE]...`
    ///
    /// With `--test`, read metric names from stdin, print one line per name
    /// saying where it would go, and exit. With `--config` and no
    /// destinations, the file's `[relay]` section is used.
    Relay(RelayArgs),
    /// Print the man page (roff) to stdout: `statsyard man > statsyard.1`.
    Man,
    /// Print a shell completion script to stdout, e.g.
    /// `statsyard completions bash > /usr/share/bash-completion/completions/statsyard`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct RelayArgs {
    /// Carbon plaintext listen address, TCP and UDP (repeatable; default 0.0.0.0:2003).
    #[arg(long, value_name = "ADDR")]
    listen: Vec<String>,
    /// Carbon pickle listen address, TCP (repeatable; default 0.0.0.0:2004).
    #[arg(long, value_name = "ADDR")]
    pickle_listen: Vec<String>,
    /// carbon_ch, fnv1a_ch, jump_fnv1a_ch, carbon_c_relay_ch, forward, any_of or failover.
    #[arg(long, default_value = "carbon_ch")]
    method: String,
    /// Destinations each point goes to (hashed methods).
    #[arg(long, default_value_t = 1)]
    replication: usize,
    /// Put replicas on distinct hosts (carbon's DIVERSE_REPLICAS).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    diverse_replicas: bool,
    /// Protocol to the destinations: plain or pickle.
    #[arg(long, default_value = "plain")]
    protocol: String,
    /// Also run the statsd listeners and sinks of the config (or the embedded default).
    #[arg(long)]
    with_statsd: bool,
    /// Print where each name read from stdin goes, then exit.
    #[arg(long)]
    test: bool,
    /// Destinations, host:port[:instance].
    #[arg(value_name = "DEST")]
    destinations: Vec<String>,
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
    match &cli.command {
        Some(Command::Man) => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            let cmd = Cli::command();
            clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
            // One page for everything: each subcommand's synopsis, description
            // and options follow as sections, so `man statsyard` is complete.
            for sub in cmd.get_subcommands() {
                let sub = sub
                    .clone()
                    .bin_name(format!("statsyard {}", sub.get_name()));
                page.extend_from_slice(
                    format!(".SH \"STATSYARD {}\"\n", sub.get_name().to_uppercase()).as_bytes(),
                );
                let man = clap_mangen::Man::new(sub);
                man.render_synopsis_section(&mut page)?;
                man.render_description_section(&mut page)?;
                man.render_options_section(&mut page)?;
            }
            std::io::Write::write_all(&mut std::io::stdout().lock(), &page)
                .context("writing the man page")?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "statsyard",
                &mut std::io::stdout().lock(),
            );
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    if let Some(Command::CheckConfig { file }) = &cli.command {
        let config = load_by_extension(file)?;
        for w in &config.warnings {
            eprintln!("statsyard: warning: {}: {w}", file.display());
        }
        println!("{}: ok", file.display());
        return Ok(ExitCode::SUCCESS);
    }

    if let Some(Command::Relay(args)) = &cli.command {
        let mut config = relay_config(&cli, args)?;
        if args.test {
            return relay_test(&config);
        }
        apply_flags(&cli, &mut config)?;
        return serve(config, reload_source(&cli), false);
    }

    let config = load_config(&cli)?;
    serve(config, reload_source(&cli), cli.statsd_config.is_some())
}

/// The config of a plain `statsyard` run: the file (or the embedded
/// default), with the address flags applied.
fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = match (&cli.config, &cli.statsd_config) {
        (Some(path), _) => Config::load_toml(path)?,
        (None, Some(path)) => Config::load_statsd_js(path)?,
        (None, None) => Config::embedded(),
    };
    apply_flags(cli, &mut config)?;
    Ok(config)
}

/// The flags that override the config file's keys.
fn apply_flags(cli: &Cli, config: &mut Config) -> anyhow::Result<()> {
    override_addr("--http-address", &cli.http_address, &mut config.http)?;
    override_addr("--admin-address", &cli.admin_address, &mut config.admin)?;
    if let Some(path) = &cli.web_config_file {
        let (web, warnings) = statsyard::web_config::WebConfig::load(path)
            .map_err(|e| anyhow::anyhow!("--web.config.file: {e}"))?;
        config.warnings.extend(warnings);
        config.web = Some(web);
    }
    Ok(())
}

/// How SIGHUP and `POST /-/reload` re-read the config: the same file, with
/// the same flags applied over it, as at start.
fn reload_source(cli: &Cli) -> statsyard::server::Source {
    use statsyard::server::Source;
    let cli = cli.clone();
    match &cli.command {
        Some(Command::Relay(_)) if cli.config.is_none() => {
            Source::none("statsyard relay was started from flags alone, without --config")
        }
        Some(Command::Relay(args)) => {
            let args = args.clone();
            Source::new(Box::new(move || {
                let mut config = relay_config(&cli, &args).map_err(|e| format!("{e:#}"))?;
                apply_flags(&cli, &mut config).map_err(|e| format!("{e:#}"))?;
                Ok(config)
            }))
        }
        _ if cli.config.is_none() && cli.statsd_config.is_none() => {
            Source::none("running the embedded default config; start with --config to reload")
        }
        _ => Source::new(Box::new(move || {
            load_config(&cli).map_err(|e| format!("{e:#}"))
        })),
    }
}

fn serve(
    config: Config,
    source: statsyard::server::Source,
    cli_statsd_config: bool,
) -> anyhow::Result<ExitCode> {
    let source = match init_logging(&config.log)? {
        Some(set_level) => source.with_log_level(set_level),
        None => source,
    };
    tracing::info!(config = %config.source, version = env!("CARGO_PKG_VERSION"), "starting");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("statsyard")
        .build()
        .context("cannot start the async runtime")?;
    // Under --statsd-config, say on stdout what the reference says once it
    // listens: scripts and the reference's own tests wait for it.
    let say_up = cli_statsd_config;
    runtime.block_on(server::run_with_ready(config, source, |_| {
        if say_up {
            println!("{} - server is up INFO", node_util_log_time());
        }
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// The time as node's `util.log` prints it (`6 Dec 20:54:12`), in UTC.
fn node_util_log_time() -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    format!(
        "{day} {} {:02}:{:02}:{:02}",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The config of `statsyard relay`: the file's (or the embedded default),
/// with the relay from the flags, and without statsd unless `--with-statsd`.
fn relay_config(cli: &Cli, args: &RelayArgs) -> anyhow::Result<Config> {
    use statsyard::config::raw::{RawCluster, RawConfig};
    let (mut raw, source): (RawConfig, String) = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let raw = ::toml::from_str(&text)
                .with_context(|| format!("{}: invalid TOML", path.display()))?;
            (raw, path.display().to_string())
        }
        None => (
            ::toml::from_str(statsyard::config::DEFAULT_TOML).context("embedded config")?,
            "<command line>".to_string(),
        ),
    };
    if !args.destinations.is_empty() {
        let mut relay = raw.relay.take().unwrap_or_default();
        relay.cluster = vec![RawCluster {
            name: "default".into(),
            method: args.method.clone(),
            destinations: args
                .destinations
                .iter()
                .map(|d| d.as_str().into())
                .collect(),
            replication: args.replication,
            diverse_replicas: args.diverse_replicas,
            protocol: args.protocol.clone(),
            spool_dir: None,
            spool_bytes: None,
            tls: None,
        }];
        relay.rule.clear();
        raw.relay = Some(relay);
    } else if raw.relay.is_none() {
        anyhow::bail!("give destinations (HOST:PORT[:INSTANCE]...) or a --config with [relay]");
    }
    if let Some(r) = raw.relay.as_mut() {
        if !args.listen.is_empty() {
            r.line_tcp = args.listen.iter().map(|a| a.as_str().into()).collect();
            r.line_udp = args.listen.clone();
        }
        if !args.pickle_listen.is_empty() {
            r.pickle = args
                .pickle_listen
                .iter()
                .map(|a| a.as_str().into())
                .collect();
        }
    }
    if !args.with_statsd {
        raw.statsd.udp.clear();
        raw.statsd.tcp.clear();
        raw.statsd.unix.clear();
        raw.sink.clear();
        // The admin console shows statsd aggregates: none without statsd.
        // HTTP stays on for /health and the relay's self-metrics on /metrics.
        raw.admin.enabled = false;
    }
    Ok(statsyard::config::toml::validate(raw, &source, Vec::new())?)
}

/// `statsyard relay --test`: one line per name from stdin.
fn relay_test(config: &Config) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, Write};
    let rc = config.relay.as_ref().context("no [relay] configured")?;
    let router = statsyard::relay::router::Router::new(rc)?;
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().split(b'\n') {
        let line = line.context("reading stdin")?;
        // Accept a whole carbon line too: the name is its first field.
        let Some(name) = line
            .split(|b| b.is_ascii_whitespace())
            .find(|f| !f.is_empty())
        else {
            continue;
        };
        writeln!(out, "{}", router.explain(name))?;
    }
    out.flush()?;
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
///
/// Returns how a reload sets `[log] level`; `None` when `RUST_LOG` is set,
/// since it wins over the file then too.
fn init_logging(log: &LogConfig) -> anyhow::Result<Option<statsyard::server::LogFn>> {
    use tracing_subscriber::EnvFilter;
    let (filter, from_env) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => (EnvFilter::try_new(v).context("bad RUST_LOG")?, true),
        _ => (
            EnvFilter::try_new(&log.level)
                .with_context(|| format!("bad log level {:?}", log.level))?,
            false,
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // The two formats are two types, and so are their reload handles.
    let set_level: statsyard::server::LogFn = if log.json {
        let b = builder
            .json()
            .with_env_filter(filter)
            .with_filter_reloading();
        let handle = b.reload_handle();
        b.init();
        Box::new(move |level: &str| {
            let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
            handle.reload(f).map_err(|e| e.to_string())
        })
    } else {
        let b = builder.with_env_filter(filter).with_filter_reloading();
        let handle = b.reload_handle();
        b.init();
        Box::new(move |level: &str| {
            let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
            handle.reload(f).map_err(|e| e.to_string())
        })
    };
    install_panic_hook();
    Ok((!from_env).then_some(set_level))
}

/// Panics are caught and counted by the supervisor (`src/supervise.rs`);
/// their message goes to the log as one `error` line, at most 10 per 10 s,
/// rather than to raw stderr, so that input that makes a task panic again
/// and again cannot flood the log.
fn install_panic_hook() {
    use std::sync::Mutex;
    use std::time::Duration;
    static LIMIT: Mutex<Option<statsyard::log_limit::LogLimiter>> = Mutex::new(None);
    std::panic::set_hook(Box::new(|info| {
        let mut limit = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
        let limiter = limit.get_or_insert_with(|| {
            statsyard::log_limit::LogLimiter::new(10, Duration::from_secs(10))
        });
        let Some(suppressed) = limiter.allow() else {
            return;
        };
        let thread = std::thread::current();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            %location,
            suppressed,
            "panic: {message}"
        );
    }));
}
