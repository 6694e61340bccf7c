//! The entries each data-plane worker keeps in front of the policy decision cache and the
//! minted-token cache (`conn::PerWorker`, issue 22): a worker serving the same caller again
//! compares the kept entry in full instead of hashing the caller's key. Here, on one keep-alive
//! connection (so on one worker, whose kept entries the previous request set), callers take
//! turns right after one another: each gets its own decision and its own token, as on a fresh
//! gateway, and what the upstream and the audit line see is each caller's own.

use base64::Engine as _;
use serde_json::Value;

use crate::support::*;

const A: &str = "pcs_kept_alpha_7c1e9a2b4d6f8a0c";
const B: &str = "pcs_kept_bravo_1d3f5b7a9c2e4f6a";
const OUTSIDER: &str = "pcs_kept_xray_9e8d7c6b5a4f3e2d";
const A_ID: &str = "spiffe://corp.example/partner/alpha";
const B_ID: &str = "spiffe://corp.example/partner/bravo";
const OUTSIDER_ID: &str = "spiffe://corp.example/outsider/xray";

/// The claims of the minted token the upstream received last.
fn minted_claims(up: &Upstream) -> (String, Value) {
    let seen = up.last();
    let bearer = seen.headers.get("authorization").unwrap().to_str().unwrap();
    let token = bearer.strip_prefix("Bearer ").unwrap().to_owned();
    let payload = token.split('.').nth(1).unwrap();
    let claims = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    (token, claims)
}

#[tokio::test]
async fn kept_decisions_and_tokens_answer_only_their_own_caller() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_api_keys(
        d,
        &[
            ("alpha-1", A_ID, A),
            ("bravo-1", B_ID, B),
            ("xray-1", OUTSIDER_ID, OUTSIDER),
        ],
    );
    let up = Upstream::start().await;
    let routes = format!(
        "{ISSUER}{keys}{route}",
        keys = partner_keys(d),
        route = partner_route(
            "partners",
            r#"path_prefix = "/""#,
            &format!("{ALLOW_PARTNERS}\ndangerous_allow_plaintext_credentials = true"),
            &up.url(),
            "",
            "",
        ),
    );
    let gw = start_in_process(d, &base_config(d, "", "", &routes)).await;
    // One connection, reused for every request below (sequential, one idle connection).
    let c = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = format!("http://{}/orders", gw.data_addr);
    let send = |name: &'static str, key: &'static str| c.get(&url).header(name, key).send();

    // Who asked, the status it must get, and (when forwarded) the token's subject.
    let turns: &[(&str, &str, u16, Option<&str>)] = &[
        ("x-api-key", A, 200, Some(A_ID)),
        ("x-api-key", A, 200, Some(A_ID)),
        // Right after A's allow and token were kept: an outsider the policy does not allow.
        ("x-api-key", OUTSIDER, 403, None),
        ("x-api-key", A, 200, Some(A_ID)),
        // Another allowed caller: its own token, not A's.
        ("x-api-key", B, 200, Some(B_ID)),
        ("x-api-key", A, 200, Some(A_ID)),
        // A's key under another spelling of the header name: the same caller.
        ("X-API-KEY", A, 200, Some(A_ID)),
        // A's key with its last character changed: no caller at all.
        ("x-api-key", "pcs_kept_alpha_7c1e9a2b4d6f8a0d", 401, None),
        ("x-api-key", OUTSIDER, 403, None),
        ("x-api-key", B, 200, Some(B_ID)),
    ];
    let mut tokens: std::collections::HashMap<&str, String> = Default::default();
    for (i, (name, key, want, sub)) in turns.iter().enumerate() {
        let before = up.count();
        let r = send(name, key).await.unwrap();
        assert_eq!(r.status().as_u16(), *want, "turn {i}");
        let Some(sub) = sub else {
            assert_eq!(
                up.count(),
                before,
                "turn {i}: a refused caller reached the upstream"
            );
            continue;
        };
        assert_eq!(up.count(), before + 1, "turn {i}");
        let seen = up.last();
        assert!(
            seen.headers.get("x-api-key").is_none(),
            "turn {i}: key forwarded"
        );
        let (token, claims) = minted_claims(&up);
        assert_eq!(claims["sub"], *sub, "turn {i}: {claims}");
        assert_eq!(claims["aud"], "partners", "turn {i}: {claims}");
        // The same caller is handed its own token again (the cache), never another's.
        let mine = tokens.entry(sub).or_insert_with(|| token.clone());
        assert_eq!(*mine, token, "turn {i}");
    }
    assert_ne!(tokens[A_ID], tokens[B_ID]);

    // The audit line of each turn names that turn's caller and decision.
    let lines = audit_lines(d, turns.len()).await;
    let seen: Vec<(Value, Value)> = lines
        .iter()
        .map(|l| (l["principal"].clone(), l["decision"].clone()))
        .collect();
    let want: Vec<(Value, Value)> = [
        ("alpha-1", "allow"),
        ("alpha-1", "allow"),
        ("xray-1", "deny"),
        ("alpha-1", "allow"),
        ("bravo-1", "allow"),
        ("alpha-1", "allow"),
        ("alpha-1", "allow"),
        ("", "deny"),
        ("xray-1", "deny"),
        ("bravo-1", "allow"),
    ]
    .iter()
    .map(|(p, d)| {
        let p = if p.is_empty() {
            Value::Null
        } else {
            Value::from(*p)
        };
        (p, Value::from(*d))
    })
    .collect();
    assert_eq!(seen, want);
    gw.stop().await;
}
