//! LDAP Basic through the whole gateway, against a real slapd with a RACF-like tree: the
//! password becomes a minted token, RACF groups reach a Cedar policy, the directory going away is
//! a 503 (never a 401, never a pass), and an old client trades its password for a token once.

#[path = "../../src/authn/ldap/tests/slapd.rs"]
pub(crate) mod slapd;

use base64::Engine as _;
use serde_json::Value;

use crate::support::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racf_password_becomes_a_token_groups_reach_policy_and_a_dead_directory_is_503() {
    logs::capture();
    let mut ldap = tokio::task::spawn_blocking(slapd::Slapd::start)
        .await
        .unwrap();
    let pki = Pki::new();
    let dir = pki.dir.path();
    let up = Upstream::start().await;
    std::fs::write(
        dir.join("payments.cedar"),
        r#"
@id("racf-payments-group")
permit (principal, action, resource)
when { principal.kind == "ldap" && principal.groups.contains("PAYMENTS") };

@id("exchanged-racf-tokens")
permit (principal, action, resource)
when { principal.kind == "jwt-svid" && principal.id like "spiffe://corp.example/legacy/racf/*" };
"#,
    )
    .unwrap();
    let extra = format!(
        r#"{ISSUER}
[credentials.racf]
kind = "ldap"
adapter = "zos-racf"
url = "{url}"
base_dn = "profiletype=user,cn=RACF"
identity = "spiffe://corp.example/legacy/racf/{{user}}"
cache_ttl = "60s"
max_failures = "3/15m"
connect_timeout = "1s"
timeout = "2s"

[credentials.exchanged]
kind = "jwt-svid"
trust_domains = ["corp.example"]
audience = "https://portcullis.corp.example"
trust_issuer = true

[token_exchange]
accept = ["racf"]

{route}"#,
        url = ldap.url(),
        route = RouteToml::new("cics-payments", "/cics/payments/", &up.url())
            .accept(&["exchanged", "racf"])
            .key(&format!(
                "policy = {:?}",
                dir.join("payments.cedar").display().to_string()
            ))
            .audience("cics-payments"),
    );
    let gw = start_in_process(dir, &base_config(dir, "", &pki.tls_section(), &extra)).await;
    let base = format!("https://127.0.0.1:{}", gw.data_addr.port());
    let client = pki.client(false);
    let get = |auth: String| {
        let c = client.clone();
        let url = format!("{base}/cics/payments/batch");
        async move {
            let r = c
                .get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Good password (user name in any case: RACF is upper case): 200, the upstream gets a token.
    assert_eq!(get(basic("gwjob01", "job-pass-1")).await.0, 200);
    let seen = up.last();
    let auth = seen.headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with("Bearer "),
        "the Basic password must not reach the upstream"
    );
    let c = claims(&auth[7..]);
    assert_eq!(c["sub"], "spiffe://corp.example/legacy/racf/gwjob01");
    assert_eq!(c["amr"], serde_json::json!(["ldap"]));
    assert_eq!(
        c["legacy"],
        serde_json::json!({"credential": "racf", "principal": "GWJOB01"})
    );

    // Wrong password: 401 with a Basic challenge; a valid user outside PAYMENTS: 403.
    let (status, body) = get(basic("GWJOB01", "nope")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["type"], "urn:portcullis:invalid-credential");
    assert_eq!(get(basic("VICTIM", "victim-pass")).await.0, 403);

    // The old client trades its password for a token once, then uses the token.
    let r = client
        .post(format!("{base}/oauth2/token"))
        .header("authorization", basic("GWJOB01", "job-pass-1"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(claims(&token)["legacy"]["principal"], "GWJOB01");
    assert_eq!(get(format!("Bearer {token}")).await.0, 200);
    assert!(up.last().headers["authorization"] != format!("Bearer {token}").as_str());

    // The directory goes away: cached binds aside, a new password check is 503, never 401.
    ldap.stop();
    let (status, body) = get(basic("GWJOB01", "other-pass")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "urn:portcullis:directory-unavailable");
    // Back again: the same gateway recovers on its own.
    let ldap = tokio::task::spawn_blocking(move || {
        ldap.restart();
        ldap
    })
    .await
    .unwrap();
    let (status, body) = get(basic("GWJOB01", "job-pass-1")).await;
    assert_eq!(status, 200, "{body}");
    drop(ldap);

    // Nothing secret in the audit log.
    audit_lines(dir, 5).await;
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    for secret in ["job-pass-1", "victim-pass", "other-pass", &token] {
        assert!(!audit.contains(secret), "{secret:?} reached the audit log");
    }
    assert!(logs::contains("LDAP credential refused"));
    logs::assert_absent(&["job-pass-1", "victim-pass", "other-pass", &token]);
}
