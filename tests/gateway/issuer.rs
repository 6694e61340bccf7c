//! The issuer's public surface: `keys generate`, the JWKS and discovery documents on the data
//! listener, `token inspect`, and an independent verifier (PyJWT) that is given only the JWKS URL.

use std::process::Command;
use std::sync::Arc;
use std::time::SystemTime;

use portcullis::identity::profile::Profile;
use portcullis::identity::Kind;
use portcullis::token::keyset::{KeySet, SignerRequirement};
use portcullis::token::mint::{Issuer, Legacy, MintRequest};

use crate::support::*;

const ISSUER_URL: &str = "https://portcullis.corp.example";

fn generate(path: &std::path::Path) -> std::process::Output {
    Command::new(bin())
        .args(["keys", "generate", "--alg", "es256", "--out"])
        .arg(path)
        .output()
        .unwrap()
}

async fn gateway_with_key(
    dir: &std::path::Path,
) -> (portcullis::server::Running, std::path::PathBuf) {
    let key = dir.join("current.pem");
    let out = generate(&key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let issuer = format!(
        "\n[issuer]\nurl = \"{ISSUER_URL}\"\nspiffe_id = \"spiffe://corp.example/portcullis\"\nkeys = [\"{}\"]\nttl = \"5m\"\nwell_known_hosts = [\"127.0.0.1\"]\n",
        key.display()
    );
    let toml = base_config(dir, "", "", &issuer);
    (start_in_process(dir, &toml).await, key)
}

fn mint(key: &std::path::Path) -> String {
    portcullis::token::install_jwt_provider();
    let metrics = Arc::new(portcullis::metrics::Metrics::default());
    let keys =
        Arc::new(KeySet::load(&[key.to_path_buf()], SignerRequirement::Es256, metrics).unwrap());
    let issuer = Issuer::new(
        ISSUER_URL,
        "spiffe://corp.example/portcullis",
        std::time::Duration::from_secs(300),
        keys,
    )
    .unwrap();
    let req = MintRequest {
        identity: "spiffe://corp.example/legacy/racf/batch01",
        audience: "cics-payments",
        kind: Kind::Ldap,
        profile: Profile::JwtSvid,
        cnf: None,
        legacy: Some(Legacy {
            credential: "racf",
            principal: Some("BATCH01"),
        }),
        lineage: None,
    };
    issuer
        .mint(&req, SystemTime::now())
        .unwrap()
        .token
        .to_string()
}

#[test]
fn keys_generate_writes_0600_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let out = generate(&key);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("kid"));
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = std::fs::read(&key).unwrap();
    let again = generate(&key);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the existing key must be untouched"
    );
    let bad = Command::new(bin())
        .args(["keys", "generate", "--alg", "hs256", "--out"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
}

// Multi-threaded: the CLI child processes block a worker while the in-process gateway serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_and_discovery_are_served_and_verify_minted_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, key) = gateway_with_key(dir.path()).await;
    let base = format!("http://{}", gw.data_addr);

    let resp = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "public, max-age=300");
    let jwks: serde_json::Value = resp.json().await.unwrap();
    let k = &jwks["keys"][0];
    assert_eq!(k["kty"], "EC");
    assert_eq!(k["crv"], "P-256");
    assert_eq!(k["alg"], "ES256");
    assert_eq!(k["use"], "sig");
    assert_eq!(
        k["kid"].as_str().unwrap().len(),
        43,
        "RFC 7638 SHA-256 thumbprint, base64url"
    );
    assert!(k.get("d").is_none(), "never publish the private part");

    let disc: serde_json::Value = reqwest::get(format!("{base}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disc["issuer"], ISSUER_URL);
    assert_eq!(
        disc["jwks_uri"],
        format!("{ISSUER_URL}/.well-known/jwks.json")
    );
    // No [token_exchange]: no token endpoint is advertised.
    assert!(disc.get("token_endpoint").is_none(), "{disc}");

    // `token inspect` against the live JWKS.
    let token = mint(&key);
    let out = Command::new(bin())
        .args([
            "token",
            "inspect",
            &token,
            "--json",
            "--jwks-url",
            &format!("{base}/.well-known/jwks.json"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown
            .to_string()
            .matches("spiffe://corp.example/legacy/racf/batch01")
            .count(),
        1,
        "{shown}"
    );
    // A tampered payload is refused.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = parts[1].chars().rev().collect();
    let out = Command::new(bin())
        .args([
            "token",
            "inspect",
            &parts.join("."),
            "--jwks-url",
            &format!("{base}/.well-known/jwks.json"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // PyJWT, given only the JWKS URL, verifies the token and every claim of docs/tokens.md.
    let script = r#"
import json, sys, time, jwt
url, token = sys.argv[1], sys.argv[2]
key = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
header = jwt.get_unverified_header(token)
assert set(header) == {"alg", "kid", "typ"} and header["alg"] == "ES256" and header["typ"] == "JWT", header
c = jwt.decode(token, key.key, algorithms=["ES256"], audience="cics-payments", issuer="https://portcullis.corp.example",
               options={"require": ["exp", "iat", "nbf", "jti", "sub", "aud", "iss"]})
assert c["sub"] == "spiffe://corp.example/legacy/racf/batch01", c
assert c["amr"] == ["ldap"], c
assert c["act"] == {"sub": "spiffe://corp.example/portcullis"}, c
assert c["legacy"] == {"credential": "racf", "principal": "BATCH01"}, c
assert 0 < c["exp"] - c["iat"] <= 300 and c["nbf"] <= time.time() + 1, c
assert "cnf" not in c
print("pyjwt-ok")
"#;
    let url = format!("{base}/.well-known/jwks.json");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", script, &url, &token])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pyjwt-ok"),
        "PyJWT (pip install 'pyjwt[crypto]'; scripts/test does it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    gw.stop().await;
}

#[test]
fn check_reports_issuer_problems() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[issuer]\nurl = \"ftp://nope\"\nspiffe_id = \"https://not-spiffe\"\nkeys = [\"{}\"]\nttl = \"48h\"\n",
        base_config(dir.path(), "", "", ""),
        dir.path().join("missing.pem").display()
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(bin())
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "issuer.url",
        "issuer.spiffe_id",
        "issuer.ttl",
        "issuer.keys",
    ] {
        assert!(
            err.lines().any(|l| l.contains(&format!(": {key}: "))),
            "{key} missing in:\n{err}"
        );
    }
}
