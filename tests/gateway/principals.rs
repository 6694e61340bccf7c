//! Credentials and principals: one spelling per LDAP principal (revocation cannot be dodged by
//! typing the user name in another case), revocation targets that cannot match are refused and
//! the others canonicalized the way authentication does, and a stranger cannot lock an LDAP
//! account's owner out. Against a real slapd (`src/authn/ldap/tests/slapd.rs`).

use crate::ldap::slapd;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::*;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

fn claims(token: &str) -> Value {
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

async fn start_slapd() -> slapd::Slapd {
    tokio::task::spawn_blocking(slapd::Slapd::start)
        .await
        .unwrap()
}

/// A gateway with `corp-ldap` (openldap adapter, the example tree), `racf` (zos-racf, the RACF
/// tree) and `partner-keys` (api-key), one plain-HTTP route accepting the LDAP ones, and the
/// state in `dir/state.db` (so a restart keeps it). `extra` goes into the `corp-ldap` table.
fn config(dir: &Path, ldap_url: &str, up: &str, extra: &str) -> String {
    write_api_keys(
        dir,
        &[("acme-1", "spiffe://corp.example/partner/acme", "k-1")],
    );
    let routes = format!(
        r#"{ISSUER}
[state]
backend = "embedded"
path = "{d}/state.db"

[credentials.corp-ldap]
kind = "ldap"
adapter = "openldap"
url = "{ldap_url}"
bind_dn = "uid=gwsearch,ou=services,dc=example,dc=org"
bind_password_file = "{d}/search.pw"
base_dn = "ou=people,dc=example,dc=org"
identity = "spiffe://corp.example/legacy/ldap/{{user}}"
cache_ttl = "60s"
max_failures = "3/15m"
connect_timeout = "1s"
timeout = "2s"
{extra}

[credentials.racf]
kind = "ldap"
adapter = "zos-racf"
url = "{ldap_url}"
base_dn = "profiletype=user,cn=RACF"
identity = "spiffe://corp.example/legacy/racf/{{user}}"
cache_ttl = "60s"
connect_timeout = "1s"
timeout = "2s"

{partner_keys}{stripe_hooks}{legacy}{racf}"#,
        d = dir.display(),
        partner_keys = api_key_credential("partner-keys", dir, "header = \"X-API-Key\""),
        stripe_hooks = webhook_credential(
            "stripe-hooks",
            "stripe",
            &dir.join("stripe.secret"),
            "spiffe://corp.example/external/stripe"
        ),
        legacy = plaintext_route("legacy", &["corp-ldap", "partner-keys"], up),
        racf = plaintext_route("racf", &["racf"], up),
    );
    std::fs::write(dir.join("search.pw"), "search-secret\n").unwrap();
    std::fs::write(dir.join("stripe.secret"), "whsec_dGVzdHNlY3JldA==\n").unwrap();
    base_config(dir, "", "", &routes)
}

/// Status and body of `GET /legacy/x` (the `corp-ldap` credential) with `auth`, from `from` (a
/// loopback address).
async fn get_from(gw: &portcullis::server::Running, from: IpAddr, auth: &str) -> (u16, Value) {
    get_path(gw, from, "/legacy/x", auth).await
}

async fn get_path(
    gw: &portcullis::server::Running,
    from: IpAddr,
    path: &str,
    auth: &str,
) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .local_address(from)
        .build()
        .unwrap();
    let r = client
        .get(format!("http://{}{path}", gw.data_addr))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

async fn get(gw: &portcullis::server::Running, auth: &str) -> (u16, Value) {
    get_from(gw, IpAddr::V4(Ipv4Addr::LOCALHOST), auth).await
}

/// `GET /racf/x` (the `racf` credential).
async fn racf(gw: &portcullis::server::Running, auth: &str) -> (u16, Value) {
    get_path(gw, IpAddr::V4(Ipv4Addr::LOCALHOST), "/racf/x", auth).await
}

/// `POST` (or `DELETE`) `/admin/v1/revocations` with `body`.
async fn revocation(gw: &portcullis::server::Running, delete: bool, body: Value) -> (u16, Value) {
    let url = format!("http://{}/admin/v1/revocations", gw.admin_addr);
    let c = reqwest::Client::new();
    let req = if delete { c.delete(url) } else { c.post(url) };
    let r = req.json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_user_name_case_cannot_dodge_a_revocation() {
    let ldap = start_slapd().await;
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let gw = start_in_process(dir.path(), &config(dir.path(), &ldap.url(), &up.url(), "")).await;

    // Every spelling is the one principal `alice` (the directory ignores case): in the minted
    // token's `legacy` claim and in the inventory.
    for user in ["alice", "ALICE", "Alice", "aLiCe"] {
        let (status, body) = get(&gw, &basic(user, "alice-pass")).await;
        assert_eq!(status, 200, "{user}: {body}");
        let auth = up.last().headers["authorization"]
            .to_str()
            .unwrap()
            .to_owned();
        let c = claims(auth.strip_prefix("Bearer ").unwrap());
        assert_eq!(
            c["legacy"],
            json!({"credential": "corp-ldap", "principal": "alice"}),
            "{user}"
        );
        assert_eq!(c["sub"], "spiffe://corp.example/legacy/ldap/alice");
    }
    let inv: Value = reqwest::get(format!("http://{}/admin/v1/inventory", gw.admin_addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = inv.to_string();
    assert!(text.contains("\"alice\""), "{inv}");
    for other in ["ALICE", "Alice", "aLiCe"] {
        assert!(
            !text.contains(other),
            "one principal per user in the inventory: {inv}"
        );
    }

    // Revoke `alice`: no spelling gets through any more, cached binds included.
    let (status, body) = revocation(
        &gw,
        false,
        json!({"credential": "corp-ldap:alice", "reason": "left"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for user in ["alice", "ALICE", "Alice", "aLiCe", "alicE"] {
        let (status, body) = get(&gw, &basic(user, "alice-pass")).await;
        assert_eq!(status, 401, "{user} must be revoked: {body}");
    }
    // Another user of the same directory is untouched.
    assert_eq!(get(&gw, &basic("BOB", "bob-pass")).await.0, 200);

    // RACF ids are case-insensitive too, and upper-case: `gwjob01` is `GWJOB01`.
    let (status, body) = racf(&gw, &basic("gwjob01", "job-pass-1")).await;
    assert_eq!(status, 200, "{body}");
    let auth = up.last().headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        claims(auth.strip_prefix("Bearer ").unwrap())["legacy"]["principal"],
        "GWJOB01"
    );
    let (status, body) = revocation(
        &gw,
        false,
        json!({"credential": "racf:GWJOB01", "reason": "left"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for user in ["GWJOB01", "gwjob01", "GwJob01"] {
        assert_eq!(racf(&gw, &basic(user, "job-pass-1")).await.0, 401, "{user}");
    }
    drop(ldap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_targets_that_cannot_match_are_refused_and_the_rest_canonicalized() {
    let ldap = start_slapd().await;
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let gw = start_in_process(dir.path(), &config(dir.path(), &ldap.url(), &up.url(), "")).await;

    // Targets that can never match anything: 422 problem+json saying why, nothing stored.
    let refused = [
        json!({"credential": "Partner-Keys:acme-1", "reason": "r"}), // no such credential
        json!({"credential": "nope:acme-1", "reason": "r"}),
        json!({"credential": "stripe-hooks:x", "reason": "r"}), // a webhook's principal is its adapter
        json!({"credential": "corp-ldap:al/ice", "reason": "r"}), // not a user name
        json!({"credential": "corp-ldap: alice", "reason": "r"}),
        json!({"credential": "corp-ldap:alice\u{202e}", "reason": "r"}),
        json!({"credential": "racf:TOOLONGID", "reason": "r"}), // RACF ids are 1–8 chars
        json!({"identity": "spiffe://corp.example/partner/acme/", "reason": "r"}),
        json!({"identity": "spiffe://corp.example/partner/\u{202e}emca", "reason": "r"}),
        json!({"identity": "spiffe://corp.example/partner/acmé", "reason": "r"}),
        json!({"identity": "spiffe://Corp.Example/partner/acme", "reason": "r"}),
        json!({"identity": "spiffe://corp.example//partner/acme", "reason": "r"}),
        json!({"identity": "spiffe://corp.example/partner/../admin", "reason": "r"}),
        json!({"jti": "t-1\u{202e}", "reason": "r"}),
    ];
    for body in &refused {
        let r = reqwest::Client::new()
            .post(format!("http://{}/admin/v1/revocations", gw.admin_addr))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
        let p: Value = r.json().await.unwrap();
        assert!(
            p["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}: {p}"
        );
        // DELETE refuses the same targets the same way.
        let (status, _) = revocation(&gw, true, body.clone()).await;
        assert_eq!(status, 422, "DELETE {body}");
    }
    let list: Value = reqwest::get(format!("http://{}/admin/v1/revocations", gw.admin_addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["revocations"], json!([]), "nothing refused was stored");

    // `portcullis revoke` goes through the same check and says why.
    let admin = format!("http://{}", gw.admin_addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "revoke",
                "--credential",
                "Partner-Keys:acme-1",
                "--reason",
                "x",
                "--admin",
                &admin,
            ])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean partner-keys"), "{err}");

    // A principal in another case is stored in the directory's case, and works.
    assert_eq!(racf(&gw, &basic("gwjob01", "job-pass-1")).await.0, 200);
    let (status, body) = revocation(
        &gw,
        false,
        json!({"credential": "racf:gwjob01", "reason": "left"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["target"], "credential:racf:GWJOB01");
    assert_eq!(racf(&gw, &basic("GWJOB01", "job-pass-1")).await.0, 401);
    // The same revocation in another spelling is the same revocation (200: reason updated).
    let (status, _) = revocation(
        &gw,
        false,
        json!({"credential": "racf:GwJob01", "reason": "left, really"}),
    )
    .await;
    assert_eq!(status, 200);
    // DELETE canonicalizes the same way: lifting `racf:gwjob01` lifts `racf:GWJOB01`.
    let (status, body) = revocation(&gw, true, json!({"credential": "racf:gwjob01"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(racf(&gw, &basic("GWJOB01", "job-pass-1")).await.0, 200);

    // An LDAP identity typed in the user's case is the mapped (lower-case) identity.
    let (status, body) = revocation(
        &gw,
        false,
        json!({"identity": "spiffe://corp.example/legacy/racf/GWJOB01", "reason": "left"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["target"],
        "identity:spiffe://corp.example/legacy/racf/gwjob01"
    );
    assert_eq!(racf(&gw, &basic("gwjob01", "job-pass-1")).await.0, 401);
    let (status, _) = revocation(
        &gw,
        true,
        json!({"identity": "spiffe://corp.example/legacy/racf/GwJob01"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(racf(&gw, &basic("gwjob01", "job-pass-1")).await.0, 200);

    // LDAP principals: `corp-ldap:ALICE` revokes alice.
    let (status, body) = revocation(
        &gw,
        false,
        json!({"credential": "corp-ldap:ALICE", "reason": "left"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["target"], "credential:corp-ldap:alice");
    assert_eq!(get(&gw, &basic("alice", "alice-pass")).await.0, 401);

    // API key ids are compared exactly: the configured credential name is required.
    let (status, body) = revocation(
        &gw,
        false,
        json!({"credential": "partner-keys:acme-1", "reason": "rotated"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    drop(ldap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_lock_the_owner_out() {
    let ldap = start_slapd().await;
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let toml = config(dir.path(), &ldap.url(), &up.url(), "");
    let owner = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let stranger = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

    // The owner has used the gateway before (here: before a restart).
    let gw = start_in_process(dir.path(), &toml).await;
    assert_eq!(
        get_from(&gw, owner, &basic("alice", "alice-pass")).await.0,
        200
    );
    gw.shutdown();
    gw.wait().await;
    let gw = start_in_process(dir.path(), &toml).await;

    // A stranger spends the account's budget (in any spelling: one account).
    for (i, user) in ["alice", "ALICE", "Alice", "alice", "aLiCe", "alice"]
        .iter()
        .enumerate()
    {
        let (status, body) = get_from(&gw, stranger, &basic(user, &format!("guess-{i}"))).await;
        assert_eq!(status, 401, "{body}");
    }
    let failed = ldap.failed_binds(ALICE_DN);
    assert!(failed <= 3, "the directory saw {failed} failed binds");

    // The owner's password still works.
    let (status, body) = get_from(&gw, owner, &basic("alice", "alice-pass")).await;
    assert_eq!(status, 200, "the owner was locked out: {body}");
    // So does another spelling of it from elsewhere, and a later request (cached).
    assert_eq!(
        get_from(&gw, other, &basic("ALICE", "alice-pass")).await.0,
        200
    );

    // More guesses, from the stranger and from another source: refused without the directory.
    for i in 0..8 {
        let from = if i % 2 == 0 { stranger } else { other };
        let (status, _) = get_from(&gw, from, &basic("alice", &format!("more-{i}"))).await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        ldap.failed_binds(ALICE_DN),
        failed,
        "guesses reached the directory"
    );
    assert_eq!(
        get_from(&gw, owner, &basic("alice", "alice-pass")).await.0,
        200
    );

    // An account never seen through the gateway has no verifier: once its budget is spent it is
    // refused until the window ends (documented), and still never past the budget.
    for i in 0..5 {
        get_from(&gw, stranger, &basic("bob", &format!("guess-{i}"))).await;
    }
    assert!(ldap.failed_binds("uid=bob,ou=people,dc=example,dc=org") <= 3);
    drop(ldap);
}

/// A plain-HTTP route `/<name>/` for the LDAP and API-key credentials `accept`, audience `name`.
fn plaintext_route(name: &str, accept: &[&str], up: &str) -> RouteToml {
    RouteToml::new(name, &format!("/{name}/"), up)
        .accept(accept)
        .allow(&["spiffe://corp.example/*"])
        .key("dangerous_allow_plaintext_credentials = true")
        .audience(name)
        .upstream_key("timeout = \"2s\"")
}
