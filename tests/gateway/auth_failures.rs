//! `portcullis_auth_failures_total{credential,reason}` (`docs/metrics.md`): one sample per wrong
//! credential refused, labelled with the credential that refused it; a missing credential, an
//! ambiguous one, a good one and a retired legacy credential are not authentication failures.
//! Checked by scraping `/metrics` on the admin listener.

use crate::support::*;

const ACME: &str = "pcs_authfail_acme_4d2c8b1e9f3a5d7c6b0e";
const ACME_ID: &str = "spiffe://corp.example/partner/acme";
/// The test speaks plain HTTP to the gateway (TLS plays no part in what is counted).
const PLAIN: &str = "dangerous_allow_plaintext_credentials = true";

/// The value of the sample `name{labels}`, 0 when absent.
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let want = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn wrong_credentials_are_counted_by_the_credential_that_refused_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_api_keys(d, &[("acme", ACME_ID, ACME)]);
    let up = Upstream::start().await;
    let u = up.url();
    let routes = format!(
        "{ISSUER}{keys}\n[credentials.old-keys]\nkind = \"api-key\"\nheader = \"X-Old-Key\"\nkeys_file = \"{d}/keys.toml\"\n{partner}{old}",
        keys = partner_keys(d),
        d = d.display(),
        partner = partner_route("partner", r#"path_prefix = "/partner/""#, &format!("{ALLOW_PARTNERS}\n{PLAIN}"), &u, "", ""),
        old = "\n[[routes]]\nname = \"old\"\nmatch = { path_prefix = \"/old/\" }\naccept = [\"old-keys\"]\nallow = [\"spiffe://corp.example/partner/*\"]\n"
            .to_owned()
            + PLAIN
            + "\n"
            + &format!("[routes.upstream]\nurl = \"{u}\"\naudience = \"old\"\n"),
    );
    let gw = start_in_process(d, &base_config(d, "", "", &routes)).await;
    let base = format!("http://{}", gw.data_addr);
    let c = reqwest::Client::new();
    let send = |path: &str, headers: &[(&str, &str)]| {
        let mut rb = c.get(format!("{base}{path}"));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send()
    };
    let name = "portcullis_auth_failures_total";
    let partner = r#"credential="partner-keys",reason="invalid-credential""#;
    let old = r#"credential="old-keys",reason="invalid-credential""#;
    // Declared and empty before anything failed.
    let text = scrape(&gw).await;
    assert!(text.contains(&format!("# TYPE {name} counter")), "{text}");
    assert_eq!(sample(&text, name, partner), 0.0);

    // Two wrong keys, one that differs from the real one in its last character.
    let near = format!("{}x", &ACME[..ACME.len() - 1]);
    for key in ["pcs_wrong_key_000000000000", near.as_str()] {
        let r = send("/partner/x", &[("x-api-key", key)]).await.unwrap();
        assert_eq!(r.status(), 401);
    }
    // Not authentication failures: no credential (401 unauthenticated), the key twice (400),
    // the right key (200).
    assert_eq!(send("/partner/x", &[]).await.unwrap().status(), 401);
    let twice = c
        .get(format!("{base}/partner/x"))
        .header("x-api-key", ACME)
        .header("x-api-key", "pcs_wrong_key_000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400);
    assert_eq!(
        send("/partner/x", &[("x-api-key", ACME)])
            .await
            .unwrap()
            .status(),
        200
    );
    // A wrong key on the other credential's header is that credential's failure.
    let r = send("/old/x", &[("x-old-key", "pcs_wrong_key_111111111111")])
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The partner key sent on the route that only accepts X-Old-Key is no credential there.
    assert_eq!(
        send("/old/x", &[("x-api-key", ACME)])
            .await
            .unwrap()
            .status(),
        401
    );

    let text = scrape(&gw).await;
    assert_eq!(sample(&text, name, partner), 2.0, "{text}");
    assert_eq!(sample(&text, name, old), 1.0, "{text}");
    let all: usize = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .count();
    assert_eq!(all, 2, "only the two credentials that refused: {text}");
    // The secret never becomes a label value.
    assert!(
        !text.contains("pcs_wrong_key") && !text.contains(ACME),
        "{text}"
    );
    gw.stop().await;
}
