//! The ops commands (`docs/cli.md`): `migration status`, `inventory`, `policy suggest`, `revoke`,
//! all over the running gateway's admin API. Tables by default (the same JSON the API serves,
//! rendered by [`crate::cli::table`]), `--json` for machines.

use std::path::Path;
use std::process::ExitCode;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{EXIT_INVALID, EXIT_RUNTIME};
use crate::cli::client::AdminClient;
use crate::state::Target;

/// What to ask the admin API.
#[derive(Debug)]
pub enum Request {
    MigrationStatus,
    Inventory,
    Suggest { route: String, since: String },
    Revoke { target: Target, reason: String },
    Unrevoke { target: Target },
}

/// The target of `revoke` from its three exclusive options (clap enforces "exactly one").
pub fn target(
    identity: Option<&str>,
    credential: Option<&str>,
    jti: Option<&str>,
) -> Result<Target, String> {
    match (identity, credential, jti) {
        (Some(i), None, None) => {
            Target::identity(i).ok_or_else(|| format!("--identity {i:?}: expected a SPIFFE ID"))
        }
        (None, Some(c), None) => Target::credential(c)
            .ok_or_else(|| format!("--credential {c:?}: expected NAME:PRINCIPAL")),
        (None, None, Some(j)) => {
            Target::jti(j).ok_or_else(|| format!("--jti {j:?}: expected printable text"))
        }
        _ => Err("give exactly one of --identity, --credential, --jti".into()),
    }
}

/// How to reach the admin API: `--admin URL` (else from the config) and, for `https://`, the
/// CA and the operator's client certificate.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    pub admin: Option<String>,
    pub tls: crate::cli::client::TlsFiles,
}

/// The admin client: `--admin URL`, else the config's `[admin] addr` — `https://` when the
/// config sets `[admin] allow` (admin over mTLS), `http://` otherwise.
fn client(connect: &Connect, config: &Path) -> Result<AdminClient, ExitCode> {
    let invalid = |e: crate::cli::client::ClientError| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_INVALID)
    };
    if let Some(url) = &connect.admin {
        return AdminClient::with_tls(url, &connect.tls).map_err(invalid);
    }
    match crate::config::load(config) {
        Ok(cfg) if !cfg.admin.allow.is_empty() => {
            let local = AdminClient::for_addr(cfg.admin.addr);
            let url = local.url().replacen("http://", "https://", 1);
            AdminClient::with_tls(&url, &connect.tls).map_err(invalid)
        }
        Ok(cfg) => Ok(AdminClient::for_addr(cfg.admin.addr)),
        Err(invalid) => {
            eprintln!("{invalid}");
            eprintln!(
                "error: cannot find the admin API: the config is invalid (or pass --admin URL)"
            );
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

fn body_of(target: &Target, reason: Option<&str>) -> Value {
    let mut v = match target {
        Target::Identity(i) => json!({ "identity": i }),
        Target::Credential { name, principal } => {
            json!({ "credential": format!("{name}:{principal}") })
        }
        Target::Jti(j) => json!({ "jti": j }),
    };
    if let (Some(r), Some(m)) = (reason, v.as_object_mut()) {
        m.insert("reason".into(), Value::from(r));
    }
    v
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Strip control characters from text that came from the API before it reaches a terminal.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect()
}

/// Run one ops command; prints to stdout, errors to stderr.
pub fn run(req: Request, json_out: bool, connect: &Connect, config: &Path) -> ExitCode {
    let client = match client(connect, config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match super::client_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(execute(&client, req, json_out)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", clean(&e.to_string()));
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// What the command prints on success.
async fn execute(
    client: &AdminClient,
    req: Request,
    json_out: bool,
) -> Result<String, crate::cli::client::ClientError> {
    use crate::cli::table::{inventory_table, migration_table};
    let out = match req {
        Request::MigrationStatus => {
            let v = client.get("/admin/v1/migration").await?;
            if json_out {
                pretty(&v)
            } else {
                migration_table(&v)
            }
        }
        Request::Inventory => {
            let v = client.get("/admin/v1/inventory").await?;
            if json_out {
                pretty(&v)
            } else {
                inventory_table(&v)
            }
        }
        Request::Suggest { route, since } => {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("route", &route)
                .append_pair("since", &since)
                .finish();
            let v = client.get(&format!("/admin/v1/policy/suggest?{q}")).await?;
            if json_out {
                pretty(&v)
            } else {
                // Cedar text: escaped by the generator, printed as is.
                v.get("policy")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            }
        }
        Request::Revoke { target, reason } => {
            let (status, v) = client
                .send(
                    Method::POST,
                    "/admin/v1/revocations",
                    &body_of(&target, Some(&reason)),
                )
                .await?;
            // A gateway without `[state] path` keeps revocations in memory only.
            let until_restart = if v.get("lasts").and_then(Value::as_str) == Some("until-restart") {
                " (until the gateway restarts: it has no [state] path and keeps revocations in memory only)"
            } else {
                ""
            };
            if json_out {
                pretty(&v)
            } else if status == StatusCode::CREATED {
                format!(
                    "revoked {}: refused from now on{until_restart}",
                    clean(&target.key())
                )
            } else {
                format!(
                    "{} was already revoked; reason updated{until_restart}",
                    clean(&target.key())
                )
            }
        }
        Request::Unrevoke { target } => {
            let (_, v) = client
                .send(
                    Method::DELETE,
                    "/admin/v1/revocations",
                    &body_of(&target, None),
                )
                .await?;
            if json_out {
                pretty(&v)
            } else {
                format!("revocation of {} deleted", clean(&target.key()))
            }
        }
    };
    Ok(if out.ends_with('\n') { out } else { out + "\n" })
}

/// `portcullis reload`: `POST /admin/v1/reload`. Prints the new generation (and what needs a
/// restart), or every problem of the refused configuration and exits 1.
pub fn reload(json_out: bool, connect: &Connect, config: &Path) -> ExitCode {
    let client = match client(connect, config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match super::client_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let answer = rt.block_on(client.send_any(Method::POST, "/admin/v1/reload", &json!({})));
    let (status, v) = match answer {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {}", clean(&e.to_string()));
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let lines = |key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(clean).collect())
            .unwrap_or_default()
    };
    if status.is_success() {
        if json_out {
            println!("{}", pretty(&v));
        } else {
            let generation = v.get("generation").and_then(Value::as_u64).unwrap_or(0);
            println!("reloaded: generation {generation} is serving");
            for w in lines("warnings") {
                println!("warning: {w}");
            }
            for r in lines("restart_required") {
                println!("restart required: {r}");
            }
        }
        return ExitCode::SUCCESS;
    }
    if json_out {
        println!("{}", pretty(&v));
    }
    let detail = v.get("detail").and_then(Value::as_str).unwrap_or_default();
    eprintln!("error: reload refused ({status}): {}", clean(detail));
    for p in lines("problems") {
        eprintln!("{p}");
    }
    ExitCode::from(EXIT_RUNTIME)
}
