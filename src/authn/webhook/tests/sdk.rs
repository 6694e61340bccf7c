//! Deliveries signed outside this crate: by the providers' own Python SDKs where one signs
//! (`stripe`, and `svix` for Standard Webhooks), and by Python's `hmac` module following each
//! provider's documentation for GitHub, Slack, Shopify and Twilio. Every delivery then goes
//! through a [`WebhookAuthenticator`] with a [`MemoryReplayGuard`], as in the gateway.
//!
//! `scripts/test` installs the SDKs (`pip install stripe svix`). When they are missing these
//! tests fail, saying so: they never skip.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use super::*;
use crate::adapters;
use crate::authn::Outcome;
use crate::problem::Code;

/// Signs each request of a JSON list read from stdin; prints the list of signature header values.
const SIGNER: &str = r#"
import base64, datetime, hashlib, hmac, json, sys, urllib.parse
try:
    import stripe
    from svix.webhooks import Webhook
except ImportError as e:
    sys.exit("the webhook SDK tests need the providers' Python SDKs (%s): "
             "scripts/test installs stripe and svix into its venv, target/test-venv" % e)

def h(key, msg, algo=hashlib.sha256):
    return hmac.new(key.encode(), msg.encode(), algo).digest()

out = []
for r in json.load(sys.stdin):
    p, body, ts = r["provider"], r["body"], r["ts"]
    if p == "stripe":
        # The SDK's own signing routine, one v1 per secret (as Stripe does while rolling).
        sigs = [stripe.WebhookSignature._compute_signature("%d.%s" % (ts, body), s)
                for s in r["secrets"]]
        header = "t=%d," % ts + ",".join("v1=" + s for s in sigs)
        # And the SDK's verifier accepts exactly this header.
        for s in r["secrets"]:
            stripe.WebhookSignature.verify_header(body, header, s, tolerance=None)
        out.append(header)
    elif p == "standard-webhooks":
        when = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
        out.append(" ".join(Webhook(s).sign(r["id"], when, body) for s in r["secrets"]))
    elif p == "github":
        out.append("sha256=" + h(r["secrets"][0], body).hex())
    elif p == "slack":
        out.append("v0=" + h(r["secrets"][0], "v0:%d:%s" % (ts, body)).hex())
    elif p == "shopify":
        out.append(base64.b64encode(h(r["secrets"][0], body)).decode())
    elif p == "twilio":
        # URL, then each POST parameter sorted by name: name + value, no separators.
        params = sorted(urllib.parse.parse_qsl(body, keep_blank_values=True))
        msg = r["url"] + "".join(k + v for k, v in params)
        out.append(base64.b64encode(h(r["secrets"][0], msg, hashlib.sha1)).decode())
    elif p == "twilio-json":
        # A JSON body: Twilio adds bodySHA256 (hex SHA-256 of the body) to the URL, signs the URL.
        url = r["url"] + "&bodySHA256=" + hashlib.sha256(body.encode()).hexdigest()
        out.append(base64.b64encode(h(r["secrets"][0], url, hashlib.sha1)).decode())
    else:
        sys.exit("unknown provider " + p)
json.dump(out, sys.stdout)
"#;

const NOW: u64 = 1_750_000_000;
const MSG_ID: &str = "msg_2m4Xo0Kc3vR7tYp";
const TWILIO_URL: &str = "https://gw.example.com/hooks/twilio?tenant=acme";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// One delivery to have signed.
#[derive(Clone)]
struct Delivery {
    provider: &'static str,
    secrets: Vec<&'static str>,
    ts: u64,
    body: &'static str,
}

/// Run the Python signer over `deliveries`; one signature header value each.
fn sign_all(deliveries: &[Delivery]) -> Vec<String> {
    let input: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            json!({"provider": d.provider, "secrets": d.secrets, "ts": d.ts, "body": d.body,
                   "id": MSG_ID, "url": TWILIO_URL})
        })
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", SIGNER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 for the webhook SDK tests: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python signer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sign(d: &Delivery) -> String {
    sign_all(std::slice::from_ref(d)).remove(0)
}

struct Provider {
    name: &'static str,
    /// As the operator configures them: old, new.
    secrets: [&'static str; 2],
    timestamped: bool,
    body: &'static str,
    tampered: &'static str,
    /// An empty signature, as the provider's header would carry it.
    empty: &'static str,
}

const JSON: &str = r#"{"id":"evt_1NtF2xL","type":"payment_intent.succeeded","amount":4200}"#;
const JSON_TAMPERED: &str =
    r#"{"id":"evt_1NtF2xL","type":"payment_intent.succeeded","amount":9900}"#;

fn providers() -> Vec<Provider> {
    let p = |name, secrets, timestamped, empty| Provider {
        name,
        secrets,
        timestamped,
        body: JSON,
        tampered: JSON_TAMPERED,
        empty,
    };
    vec![
        p(
            "stripe",
            ["whsec_oldSecretForRolling", "whsec_newSecretAfterRoll"],
            true,
            "t={ts},v1=",
        ),
        p(
            "standard-webhooks",
            [
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            ],
            true,
            "v1,",
        ),
        p(
            "github",
            ["old-gh-secret", "new-gh-secret"],
            false,
            "sha256=",
        ),
        Provider {
            body: "token=x&team_id=T0001&command=%2Fweather&text=94070",
            tampered: "token=x&team_id=T0002&command=%2Fweather&text=94070",
            ..p(
                "slack",
                [
                    "8f742231b10e8888abcd99yyyzzz85a5",
                    "9a853342c21f9999bcde00zzzaaa96b6",
                ],
                true,
                "v0=",
            )
        },
        p("shopify", ["shpss_old", "shpss_new"], false, ""),
        Provider {
            body: "To=%2B18005551212&From=%2B14158675310&Body=Hello+there&Empty=",
            tampered: "To=%2B18005551212&From=%2B14158675311&Body=Hello+there&Empty=",
            ..p("twilio", ["old-auth-token", "new-auth-token"], false, "")
        },
    ]
}

impl Provider {
    fn delivery(&self, secrets: &[&'static str], ts: u64) -> Delivery {
        Delivery {
            provider: self.name,
            secrets: secrets.to_vec(),
            ts,
            body: self.body,
        }
    }

    /// The request headers for a delivery at `ts` carrying `signature`.
    fn headers(&self, signature: &str, ts: u64) -> HeaderMap {
        let ts = ts.to_string();
        let pairs: Vec<(&str, &str)> = match self.name {
            "stripe" => vec![("stripe-signature", signature)],
            "standard-webhooks" => vec![
                ("webhook-id", MSG_ID),
                ("webhook-timestamp", &ts),
                ("webhook-signature", signature),
            ],
            "github" => vec![
                ("x-hub-signature-256", signature),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ],
            "slack" => vec![
                ("x-slack-signature", signature),
                ("x-slack-request-timestamp", &ts),
            ],
            "shopify" => vec![
                ("x-shopify-hmac-sha256", signature),
                (
                    "x-shopify-webhook-id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                ),
            ],
            "twilio" => vec![
                ("x-twilio-signature", signature),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            other => panic!("{other}"),
        };
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn authenticator(&self, secrets: &[&str]) -> WebhookAuthenticator {
        let adapter = adapters::builtin().unwrap().get_webhook(self.name).unwrap();
        let secrets = secrets.iter().map(|s| WebhookSecret::new(*s)).collect();
        WebhookAuthenticator::new(
            Arc::from(format!("{}-hooks", self.name)),
            format!("spiffe://corp.example/external/{}", self.name),
            WebhookVerifier::new(adapter, secrets, None).unwrap(),
            Arc::new(MemoryReplayGuard::new(1000)),
        )
    }
}

async fn check(
    a: &WebhookAuthenticator,
    h: &HeaderMap,
    body: &str,
    now: u64,
) -> Result<Verified, WebhookError> {
    a.check(h, body.as_bytes(), TWILIO_URL, at(now)).await
}

#[tokio::test]
async fn sdk_signed_delivery_is_accepted_once() {
    let ps = providers();
    let sigs = sign_all(
        &ps.iter()
            .map(|p| p.delivery(&[p.secrets[0]], NOW))
            .collect::<Vec<_>>(),
    );
    for (p, sig) in ps.iter().zip(&sigs) {
        let a = p.authenticator(&[p.secrets[0]]);
        let h = p.headers(sig, NOW);
        let (mut req, ()) = http::Request::builder()
            .uri("/hooks")
            .body(())
            .unwrap()
            .into_parts();
        req.headers = h.clone();
        match a
            .authenticate_with_body(&req, p.body.as_bytes(), TWILIO_URL, at(NOW))
            .await
        {
            Outcome::Authenticated(c) => {
                assert_eq!(c.kind, crate::identity::Kind::Webhook);
                assert_eq!(
                    c.identity,
                    format!("spiffe://corp.example/external/{}", p.name)
                );
            }
            other => panic!("{}: {other:?} for {sig}", p.name),
        }
        // The same delivery again, through the same authenticator: a replay.
        match a
            .authenticate_with_body(&req, p.body.as_bytes(), TWILIO_URL, at(NOW + 5))
            .await
        {
            Outcome::Rejected(r) => {
                assert_eq!(r.code, Code::InvalidCredential, "{}", p.name);
                assert!(r.detail.contains("replay"), "{}: {}", p.name, r.detail);
            }
            other => panic!("{}: replay {other:?}", p.name),
        }
    }
}

#[tokio::test]
async fn tampered_body_is_refused() {
    let ps = providers();
    let sigs = sign_all(
        &ps.iter()
            .map(|p| p.delivery(&[p.secrets[0]], NOW))
            .collect::<Vec<_>>(),
    );
    for (p, sig) in ps.iter().zip(&sigs) {
        let a = p.authenticator(&[p.secrets[0]]);
        let got = check(&a, &p.headers(sig, NOW), p.tampered, NOW).await;
        assert_eq!(got, Err(WebhookError::Mismatch), "{}", p.name);
        // The untampered body still passes: the refusal was about the body.
        assert!(
            check(&a, &p.headers(sig, NOW), p.body, NOW).await.is_ok(),
            "{}",
            p.name
        );
    }
}

#[tokio::test]
async fn stale_or_future_timestamp_is_refused() {
    let ps: Vec<Provider> = providers().into_iter().filter(|p| p.timestamped).collect();
    assert_eq!(ps.len(), 3);
    let times = [NOW - 301, NOW + 301, NOW - 3600];
    let deliveries: Vec<Delivery> = ps
        .iter()
        .flat_map(|p| times.iter().map(|t| p.delivery(&[p.secrets[0]], *t)))
        .collect();
    let sigs = sign_all(&deliveries);
    for (d, sig) in deliveries.iter().zip(&sigs) {
        let p = ps.iter().find(|p| p.name == d.provider).unwrap();
        let a = p.authenticator(&[p.secrets[0]]);
        let got = check(&a, &p.headers(sig, d.ts), p.body, NOW).await;
        assert_eq!(
            got,
            Err(WebhookError::StaleTimestamp),
            "{} at {}",
            p.name,
            d.ts
        );
        // Inside the window the same signature is good.
        assert!(check(&a, &p.headers(sig, d.ts), p.body, d.ts + 1)
            .await
            .is_ok());
    }
}

#[tokio::test]
async fn rotated_secret_is_accepted() {
    let ps = providers();
    // Signed with the new secret only; the credential lists old then new.
    let sigs = sign_all(
        &ps.iter()
            .map(|p| p.delivery(&[p.secrets[1]], NOW))
            .collect::<Vec<_>>(),
    );
    for (p, sig) in ps.iter().zip(&sigs) {
        let a = p.authenticator(&p.secrets);
        let got = check(&a, &p.headers(sig, NOW), p.body, NOW).await;
        assert_eq!(got.map(|v| v.secret_index), Ok(1), "{}", p.name);
        // Only the old secret configured: refused.
        let old_only = p.authenticator(&[p.secrets[0]]);
        let got = check(&old_only, &p.headers(sig, NOW), p.body, NOW).await;
        assert_eq!(got, Err(WebhookError::Mismatch), "{}", p.name);
    }
    // Stripe and Svix list one signature per active secret while rolling: either secret matches.
    for p in ps
        .iter()
        .filter(|p| p.name == "stripe" || p.name == "standard-webhooks")
    {
        let sig = sign(&p.delivery(&p.secrets, NOW));
        for s in p.secrets {
            let a = p.authenticator(&[s]);
            assert!(
                check(&a, &p.headers(&sig, NOW), p.body, NOW).await.is_ok(),
                "{}",
                p.name
            );
        }
    }
}

#[tokio::test]
async fn empty_signature_is_refused() {
    for p in providers() {
        let a = p.authenticator(&p.secrets);
        let empty = p.empty.replace("{ts}", &NOW.to_string());
        let got = check(&a, &p.headers(&empty, NOW), p.body, NOW).await;
        assert!(
            matches!(got, Err(WebhookError::Mismatch | WebhookError::NoSignature)),
            "{}: {got:?}",
            p.name
        );
    }
}

/// Svix's SDK sends `svix-*` headers; the adapter reads them as aliases.
#[tokio::test]
async fn svix_header_names_are_accepted() {
    let p = providers()
        .into_iter()
        .find(|p| p.name == "standard-webhooks")
        .unwrap();
    let sig = sign(&p.delivery(&[p.secrets[0]], NOW));
    let mut h = HeaderMap::new();
    h.insert("svix-id", HeaderValue::from_static(MSG_ID));
    h.insert("svix-timestamp", HeaderValue::from(NOW));
    h.insert("svix-signature", HeaderValue::from_str(&sig).unwrap());
    let a = p.authenticator(&[p.secrets[0]]);
    let v = check(&a, &h, p.body, NOW).await.unwrap();
    assert_eq!(v.delivery_id.as_deref(), Some(MSG_ID));
}

/// Twilio with a JSON body: the body is covered through the signed `bodySHA256` URL parameter.
#[tokio::test]
async fn twilio_json_body_is_covered_by_body_sha256() {
    let sig = sign(&Delivery {
        provider: "twilio-json",
        secrets: vec!["old-auth-token"],
        ts: NOW,
        body: JSON,
    });
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(JSON.as_bytes()));
    let url = format!("{TWILIO_URL}&bodySHA256={hash}");
    let mut h = HeaderMap::new();
    h.insert("x-twilio-signature", HeaderValue::from_str(&sig).unwrap());
    h.insert("content-type", HeaderValue::from_static("application/json"));
    let p = providers()
        .into_iter()
        .find(|p| p.name == "twilio")
        .unwrap();
    let a = p.authenticator(&[p.secrets[0]]);
    let at_now = at(NOW);
    assert!(a.check(&h, JSON.as_bytes(), &url, at_now).await.is_ok());
    // Another body under the same signed URL: its hash no longer matches.
    let got = a.check(&h, JSON_TAMPERED.as_bytes(), &url, at_now).await;
    assert!(got.is_err(), "{got:?}");
}
