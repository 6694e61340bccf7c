//! The command line (`docs/cli.md`). Exit codes: 0 ok, 1 failure at run time, 2 bad usage or
//! invalid config.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod apikey;
/// The admin API client the ops commands use.
pub mod client;
mod keys;
mod ops;
mod shell;
/// The tables the ops commands print from admin API bodies.
pub mod table;

use crate::config;
use crate::server;

/// Authentication gateway: bridges static legacy credentials to short-lived workload identity.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file (default: $PORTCULLIS_CONFIG, else ./portcullis.toml).
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Diagnostics on stderr: `text`, or `json` (one object per line).
        #[arg(long, value_enum, default_value_t = crate::telemetry::log::LogFormat::Text)]
        log_format: crate::telemetry::log::LogFormat,
    },
    /// Validate config and print a summary; exit 2 listing every problem if invalid.
    Check,
    /// The product's story on one machine: dev certificates, an echoing upstream, a migration
    /// plan in bridge, an API key, a signed webhook, and command lines that work as printed.
    Demo {
        /// Data listener port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8443)]
        port: u16,
        /// Admin listener port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 9090)]
        admin_port: u16,
    },
    /// Signing keys for the token issuer.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Minted tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// API keys for `kind = "api-key"` credentials.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Migration plans of the running gateway.
    Migration {
        #[command(subcommand)]
        command: MigrationCommand,
    },
    /// Ask the running gateway to reload its configuration file (as SIGHUP does); prints the
    /// result or every problem found, and exits 1 when the new configuration was refused.
    Reload {
        #[command(flatten)]
        out: OpsArgs,
    },
    /// Every identity and legacy credential the running gateway has seen.
    Inventory {
        #[command(flatten)]
        out: OpsArgs,
    },
    /// Authorization policies from observed traffic.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Shell completions on stdout: `portcullis completions bash > /etc/bash_completion.d/portcullis`.
    Completions {
        #[arg(value_enum)]
        shell: shell::Shell,
    },
    /// The man page (roff) on stdout, or with `--dir` every page (portcullis.1 and one
    /// portcullis-COMMAND.1 per command) written into a directory.
    Man {
        /// Write portcullis.1 and portcullis-*.1 here instead (e.g. /usr/share/man/man1).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Offboard a caller: refused from now on (`--delete` lifts a revocation).
    #[command(group(clap::ArgGroup::new("target").required(true).args(["identity", "credential", "jti"])))]
    Revoke {
        /// A SPIFFE ID, whatever credential it uses.
        #[arg(long)]
        identity: Option<String>,
        /// A legacy principal: NAME:PRINCIPAL (credential name, user or key id).
        #[arg(long)]
        credential: Option<String>,
        /// One minted token id.
        #[arg(long)]
        jti: Option<String>,
        /// Why (shown in the revocation list and audit).
        #[arg(long, required_unless_present = "delete")]
        reason: Option<String>,
        /// Delete the revocation instead.
        #[arg(long, conflicts_with = "reason")]
        delete: bool,
        #[command(flatten)]
        out: OpsArgs,
    },
}

/// Options of every ops command.
#[derive(Debug, clap::Args)]
struct OpsArgs {
    /// Admin API (default: http:// + the config's `[admin] addr`).
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// For an https:// admin API: the CA certificate (PEM) that issued the gateway's certificate.
    #[arg(long, value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,
    /// For an admin API with `[admin] allow`: your X.509-SVID (PEM chain)…
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// …and its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<std::path::PathBuf>,
}

impl OpsArgs {
    fn connect(&self) -> ops::Connect {
        ops::Connect {
            admin: self.admin.clone(),
            tls: crate::cli::client::TlsFiles {
                cacert: self.cacert.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
            },
        }
    }
}

#[derive(Debug, Subcommand)]
enum MigrationCommand {
    /// Per plan: phase, next phase, legacy share, active legacy principals, readiness.
    Status {
        #[command(flatten)]
        out: OpsArgs,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// A least-privilege Cedar policy for a route, from its observed allowed traffic.
    Suggest {
        #[arg(long)]
        route: String,
        /// How far back to look (a duration: 7d, 36h).
        #[arg(long, default_value = crate::admin::suggest::DEFAULT_SINCE)]
        since: String,
        #[command(flatten)]
        out: OpsArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ApikeyCommand {
    /// Print a fresh random key once (first line), then the `[[keys]]` entry (hash only).
    New {
        /// Key id: the principal in audit lines and minted tokens.
        #[arg(long)]
        id: String,
        /// The SPIFFE ID the key stands for.
        #[arg(long)]
        identity: String,
        /// Who to ask about the key.
        #[arg(long)]
        owner: Option<String>,
        /// Last valid day, YYYY-MM-DD (valid through its end, UTC).
        #[arg(long)]
        expires: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Write a new signing key (PKCS#8 PEM, mode 0600); refuses to overwrite.
    Generate {
        /// es256 (default; required for the jwt-svid token profile) or eddsa.
        #[arg(long, default_value = "es256")]
        alg: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Verify a token against the issuer's JWKS and print its header and claims.
    Inspect {
        token: String,
        /// JWKS URL (default: `[issuer] url` + /.well-known/jwks.json from the config).
        #[arg(long, conflicts_with = "jwks_file")]
        jwks_url: Option<String>,
        /// A JWKS document on disk.
        #[arg(long)]
        jwks_file: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// For an https:// JWKS URL: the CA certificate (PEM) that issued the gateway's
        /// certificate (default: the system's roots).
        #[arg(long, value_name = "FILE")]
        cacert: Option<PathBuf>,
    },
}

const EXIT_RUNTIME: u8 = 1;
const EXIT_INVALID: u8 = 2;

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Diagnostics go to stderr; stdout belongs to the audit log.
    crate::telemetry::log::init(match cli.command {
        Command::Serve { log_format } => log_format,
        _ => crate::telemetry::log::LogFormat::Text,
    });
    let path = config::locate(cli.config.as_deref());
    match cli.command {
        Command::Check => check(&path),
        Command::Completions { shell } => shell::completions(shell),
        Command::Man { dir } => shell::man(dir.as_deref()),
        Command::Migration {
            command: MigrationCommand::Status { out },
        } => ops::run(
            ops::Request::MigrationStatus,
            out.json,
            &out.connect(),
            &path,
        ),
        Command::Inventory { out } => {
            ops::run(ops::Request::Inventory, out.json, &out.connect(), &path)
        }
        Command::Reload { out } => ops::reload(out.json, &out.connect(), &path),
        Command::Policy {
            command: PolicyCommand::Suggest { route, since, out },
        } => ops::run(
            ops::Request::Suggest { route, since },
            out.json,
            &out.connect(),
            &path,
        ),
        Command::Revoke {
            identity,
            credential,
            jti,
            reason,
            delete,
            out,
        } => {
            let ids = (identity.as_deref(), credential.as_deref(), jti.as_deref());
            match revoke_request(ids, reason, delete) {
                Ok(req) => ops::run(req, out.json, &out.connect(), &path),
                Err(code) => code,
            }
        }
        Command::Serve { .. } => {
            let cfg = match config::load(&path) {
                Ok(c) => c,
                Err(invalid) => {
                    eprintln!("{invalid}");
                    return ExitCode::from(EXIT_INVALID);
                }
            };
            run_async(serve(cfg))
        }
        Command::Demo { port, admin_port } => run_async(crate::demo::run(port, admin_port)),
        Command::Keys {
            command: KeysCommand::Generate { alg, out },
        } => match keys::generate(&alg, &out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_RUNTIME)
            }
        },
        Command::Apikey {
            command:
                ApikeyCommand::New {
                    id,
                    identity,
                    owner,
                    expires,
                },
        } => match apikey::run(&id, &identity, owner.as_deref(), expires.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_INVALID)
            }
        },
        Command::Token {
            command:
                TokenCommand::Inspect {
                    token,
                    jwks_url,
                    jwks_file,
                    json,
                    cacert,
                },
        } => {
            let source = match (jwks_url, jwks_file) {
                (Some(u), _) => keys::JwksSource::Url(u),
                (None, Some(f)) => keys::JwksSource::File(f),
                (None, None) => keys::JwksSource::Config(path),
            };
            let rt = match client_runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(keys::inspect_token(&token, source, json, cacert)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
    }
}

/// `revoke`: the admin request for the flags given, or the exit code (after saying why).
fn revoke_request(
    (identity, credential, jti): (Option<&str>, Option<&str>, Option<&str>),
    reason: Option<String>,
    delete: bool,
) -> Result<ops::Request, ExitCode> {
    let target = ops::target(identity, credential, jti).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_INVALID)
    })?;
    match (delete, reason) {
        (true, _) => Ok(ops::Request::Unrevoke { target }),
        (false, Some(reason)) => Ok(ops::Request::Revoke { target, reason }),
        (false, None) => {
            eprintln!("error: --reason is required");
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// The single-threaded runtime of a one-shot client command; on failure, the exit code (after
/// saying why).
pub(crate) fn client_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        })
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

async fn serve(cfg: config::Config) -> anyhow::Result<()> {
    let drain = cfg.listen.drain_timeout;
    // Registered before the gateway is up: from then on SIGHUP reloads, never terminates.
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    // SIGTERM/SIGINT too: a supervisor may stop us the instant READY=1 arrives.
    let stop = server::shutdown_signal();
    let running = server::start(cfg, server::Options::default()).await?;
    // systemd Type=notify: ready once both listeners are bound (docs/deploy.md).
    let systemd = crate::sdnotify::Systemd::ready(&format!(
        "serving on {}, admin on {}",
        running.data_addr, running.admin_addr
    ));
    #[cfg(unix)]
    tokio::select! {
        _ = stop => {}
        _ = running.on_hangup(hangups) => {}
    }
    #[cfg(not(unix))]
    stop.await;
    systemd.stopping();
    tracing::info!(drain_timeout = ?drain, "shutting down: draining in-flight requests");
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Err(invalid) => {
            for p in &invalid.0 {
                eprintln!("{p}");
            }
            eprintln!("{} problem(s); config is invalid", invalid.0.len());
            ExitCode::from(EXIT_INVALID)
        }
        Ok(cfg) => {
            print!("{}", summary(&cfg));
            ExitCode::SUCCESS
        }
    }
}

/// `check`'s line for `[decision]` (with its leading newline), or nothing.
fn decision_line(cfg: &config::Config) -> String {
    cfg.decision
        .as_ref()
        .map(|d| format!("\ndecide  {}", d.summary()))
        .unwrap_or_default()
}

/// The one-screen summary printed by `check`.
pub fn summary(cfg: &config::Config) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "config {} is valid", cfg.source.display());
    let scheme = if cfg.listen.tls.is_some() {
        "https"
    } else {
        "http (plain)"
    };
    let _ = writeln!(o, "listen  {} {scheme}", cfg.listen.addr);
    let _ = writeln!(o, "admin   {}", cfg.admin.addr);
    let sink = match &cfg.audit.sink {
        crate::audit::AuditSink::Stdout => "stdout".to_string(),
        crate::audit::AuditSink::File(p) => p.display().to_string(),
    };
    let _ = writeln!(o, "audit   {sink}{}", decision_line(cfg));
    if let Some(iss) = &cfg.issuer {
        let keys = if iss.keys.is_empty() {
            "ephemeral dev key".to_string()
        } else {
            format!("{} key file(s), first signs", iss.keys.len())
        };
        let _ = writeln!(
            o,
            "issuer  {} as {} ({keys}, ttl {:?})",
            iss.url, iss.spiffe_id, iss.ttl
        );
    }
    for t in &cfg.trust {
        let mut what = Vec::new();
        if t.x509_bundle.is_some() {
            what.push("x509");
        }
        if t.jwt_bundle.is_some() {
            what.push("jwt");
        }
        let _ = writeln!(o, "trust   {} ({})", t.trust_domain, what.join(", "));
    }
    if !cfg.credentials.is_empty() {
        let _ = writeln!(o, "\ncredentials ({}):", cfg.credentials.len());
        for c in &cfg.credentials {
            let _ = writeln!(o, "  {:<20} {}", c.name, c.kind().as_str());
        }
    }
    if let Some(t) = &cfg.token_exchange {
        let names: Vec<&str> = t.accept.iter().map(|a| &**a).collect();
        let _ = writeln!(
            o,
            "token exchange: POST /oauth2/token accepts {}",
            names.join(", ")
        );
    }
    let _ = writeln!(o, "\nroutes ({}):", cfg.routes.len());
    let _ = writeln!(
        o,
        "  {:<20} {:<28} {:<16} {:<24} upstream",
        "name", "match", "methods", "accept"
    );
    for r in &cfg.routes {
        let host = match &r.host {
            Some(crate::routing::settings::HostMatch::Exact(h)) => h.clone(),
            Some(crate::routing::settings::HostMatch::Wildcard(s)) => format!("*{s}"),
            None => String::new(),
        };
        let methods = r.methods.as_ref().map_or("any".to_string(), |m| {
            m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
        });
        let _ = writeln!(
            o,
            "  {:<20} {:<28} {:<16} {:<24} {}",
            r.name,
            format!("{host}{}", r.path_prefix),
            methods,
            if r.accept.is_empty() {
                "none (pass-through)".to_string()
            } else {
                r.accept.iter().map(|a| &**a).collect::<Vec<_>>().join(",")
            },
            r.upstream.url
        );
    }
    if !cfg.plans.is_empty() {
        let now = std::time::SystemTime::now();
        let _ = writeln!(o, "\nmigration plans ({}), today:", cfg.plans.len());
        for p in cfg.plans.iter() {
            let at = p.phases.at(now);
            let next = match at.next {
                Some((phase, date)) => format!("{} on {date}", phase.as_str()),
                None => "none scheduled".to_string(),
            };
            let exception = if p.exception.is_some() {
                " (standing exception)"
            } else {
                ""
            };
            // Before its observe date a plan changes nothing yet.
            let phase = match at.since {
                Some(_) => at.phase.as_str(),
                None => "pending",
            };
            let _ = writeln!(
                o,
                "  {:<24} {:<8} next: {next}{exception}; retires {}",
                p.name,
                phase,
                p.legacy_credentials.join(",")
            );
        }
    }
    if let crate::config::StateBackend::Redis { url, prefix } = &cfg.state.backend {
        let _ = writeln!(o, "\nstate   redis {} (prefix {prefix})", url.redacted());
    }
    if !cfg.warnings.is_empty() {
        let _ = writeln!(o, "\nwarnings:");
        for w in &cfg.warnings {
            let _ = writeln!(o, "  - {w}");
        }
    }
    o
}
