//! What `portcullis demo` prints: where everything is, then the story as command lines that work
//! as printed. Each command follows a comment ending in `(expect NNN)` (an HTTP status) or
//! `(expect exit N)` (a command's exit code); `tests/gateway/demo.rs` runs every command line
//! in order and compares.

use std::fmt::Write as _;
use std::path::Path;

use super::{Addrs, Files, PARTNER_KEY_ID, WEBHOOK_BODY, WORKLOAD_ID};
use crate::devcert::{CA_DAYS, LEAF_DAYS};

/// How to call this binary in a printed line: `portcullis` when that name on `PATH` is this very
/// binary, else its full path (`cargo run -- demo` runs one that is not on `PATH`).
pub fn command_name() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "portcullis".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|d| std::fs::canonicalize(d.join("portcullis")).is_ok_and(|found| found == me))
    });
    if on_path {
        "portcullis".into()
    } else {
        quote(&me.display().to_string())
    }
}

/// `s` as one shell word: as is when it holds only characters no shell treats specially, else
/// in single quotes.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=@%+,".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn path(p: &Path) -> String {
    quote(&p.display().to_string())
}

/// The whole text.
pub fn text(f: &Files, at: &Addrs, exe: &str) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        r#"
portcullis demo is running (Ctrl-C to stop)
  gateway   {base}   (TLS; dev CA at {ca}, made at this start: CA valid {CA_DAYS} days, certificates {LEAF_DAYS})
  admin     http://{admin}   (dashboard, ops API, metrics)
  upstream  http://{upstream}   (echoes what it receives)
  config    {cfg}
  plan      {plan}   (bridge since {bridge}, enforce on {enforce})

The story: legacy callers present static secrets (an API key, a webhook signature). The gateway
checks them, strips them, and hands the upstream a short-lived token it minted instead; a
migration plan tells each caller when its static secret stops working. Run these in order; each
comment gives the status the command gets.
"#,
        base = at.base,
        ca = path(&f.ca),
        admin = at.admin,
        upstream = at.upstream,
        cfg = path(&f.config),
        plan = path(&f.plan),
        bridge = f.bridge,
        enforce = f.enforce,
    );
    legacy(&mut o, f, at, exe);
    webhook(&mut o, f, at);
    workload(&mut o, f, at);
    refusals(&mut o, f, at);
    operations(&mut o, f, at, exe);
    o.push_str("\nThe audit log follows, one JSON line per request:\n");
    o
}

/// 1. An API key in, a minted token out, with the plan's sunset on the response.
fn legacy(o: &mut String, f: &Files, at: &Addrs, exe: &str) {
    let (ca, base, key) = (path(&f.ca), &at.base, &f.api_key);
    let _ = write!(
        o,
        r#"
== 1. A static API key in, a short-lived token out (plan partner-api, phase bridge)

  # The partner's key is accepted. The response tells the partner the key is deprecated and when
  # it stops working (Deprecation, Sunset, Link rel="sunset"); the upstream's echo shows no
  # X-API-Key, and an Authorization: Bearer token the gateway minted (expect 200):
  curl -sS -i --cacert {ca} -H 'X-API-Key: {key}' {base}/partners/orders

  # That token, as the upstream received it, verified against the gateway's JWKS; it lives 5
  # minutes (expect exit 0):
  {exe} token inspect -c {cfg} --cacert {ca} "$(cat {token})"

  # A wrong key never reaches the upstream (expect 401, problem+json):
  curl -sS --cacert {ca} -H 'X-API-Key: pcs_not-a-real-key' {base}/partners/orders

  # The right key where the route does not read it (a query parameter): anonymous (expect 401):
  curl -sS --cacert {ca} '{base}/partners/orders?api_key={key}'
"#,
        cfg = path(&f.config),
        token = path(&f.token),
    );
}

/// 2. A signed webhook, and its replay.
fn webhook(o: &mut String, f: &Files, at: &Addrs) {
    let (ca, base, sig) = (path(&f.ca), &at.base, &f.signature);
    let _ = write!(
        o,
        r#"
== 2. A signed webhook (GitHub's HMAC scheme): verified, replay-protected, translated

  # A delivery signed with the demo's secret; the upstream also gets a token the gateway minted
  # for the provider's identity, spiffe://demo.example/ext/github (expect 200):
  curl -sS --cacert {ca} -H 'Content-Type: application/json' -H 'X-GitHub-Delivery: demo-1' -H 'X-Hub-Signature-256: {sig}' --data-binary '{WEBHOOK_BODY}' {base}/hooks/github

  # The same delivery again: a replay, refused (expect 401):
  curl -sS --cacert {ca} -H 'Content-Type: application/json' -H 'X-GitHub-Delivery: demo-1' -H 'X-Hub-Signature-256: {sig}' --data-binary '{WEBHOOK_BODY}' {base}/hooks/github

  # The signature with another body (expect 401):
  curl -sS --cacert {ca} -H 'Content-Type: application/json' -H 'X-GitHub-Delivery: demo-2' -H 'X-Hub-Signature-256: {sig}' --data-binary '{{"action":"closed","number":1}}' {base}/hooks/github
"#,
    );
}

/// 3. Where the migration ends: a workload identity, no static secret at all.
fn workload(o: &mut String, f: &Files, at: &Addrs) {
    let (ca, base) = (path(&f.ca), &at.base);
    let _ = write!(
        o,
        r#"
== 3. Where a migration ends: workload identity (a SPIFFE X.509-SVID over mTLS)

  # {WORKLOAD_ID}: the upstream receives a minted token bound to the client
  # certificate (expect 200):
  curl -sS --cacert {ca} --cert {svid} --key {svid_key} {base}/payments/batch

  # The same route without a client certificate (expect 401):
  curl -sS --cacert {ca} {base}/payments/batch
"#,
        svid = path(&f.svid),
        svid_key = path(&f.svid_key),
    );
}

/// 4. What every route refuses, and a pass-through route.
fn refusals(o: &mut String, f: &Files, at: &Addrs) {
    let (ca, base) = (path(&f.ca), &at.base);
    let _ = write!(
        o,
        r#"
== 4. Any route: normalized, bounded, audited

  # A pass-through route (no credential), over HTTP/1.1 (expect 200; see X-Request-Id and Forwarded):
  curl -sS --http1.1 --cacert {ca} '{base}/public/hello?name=demo'

  # The same over HTTP/2 (expect 200):
  curl -sS --http2 --cacert {ca} -X POST -d 'amount=10' {base}/public/payments

  # A path that could be read two ways is refused, never 'fixed' (expect 400, problem+json):
  curl -sS --path-as-is --cacert {ca} {base}/public/%2e%2e/admin

  # No route for this path (expect 404, problem+json):
  curl -sS --cacert {ca} {base}/nowhere

  # Bodies above the route's max_body are refused (expect 413):
  head -c 4096 /dev/zero | curl -sS --cacert {ca} -X POST --data-binary @- {base}/public/upload
"#,
    );
}

/// 5. The operator's side: dashboard, plan status, revocation taking effect, keys and metrics.
fn operations(o: &mut String, f: &Files, at: &Addrs, exe: &str) {
    let (ca, base, admin, key) = (path(&f.ca), &at.base, at.admin, &f.api_key);
    let cfg = path(&f.config);
    let _ = write!(
        o,
        r#"
== 5. Operations

  # The dashboard: open http://{admin}/ in a browser. It shows the plan partner-api in bridge, and
  # the callers above (expect 200):
  curl -sS http://{admin}/

  # The data it draws: every identity and legacy credential seen, from the demo's own traffic
  # (expect 200):
  curl -sS http://{admin}/admin/v1/inventory

  # Each plan's phase, legacy share and readiness (expect exit 0):
  {exe} migration status -c {cfg}

  # Offboard the partner: revoke its key (expect exit 0):
  {exe} revoke -c {cfg} --credential partner-keys:{PARTNER_KEY_ID} --reason 'demo: offboarded'

  # The same key, right after (expect 401):
  curl -sS --cacert {ca} -H 'X-API-Key: {key}' {base}/partners/orders

  # The issuer's public keys (JWKS), for upstreams that verify minted tokens (expect 200):
  curl -sS --cacert {ca} {base}/.well-known/jwks.json

  # Prometheus metrics on the admin listener (expect 200):
  curl -sS http://{admin}/metrics
"#,
    );
}
