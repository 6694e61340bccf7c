//! The same checks for each of the six shipped providers.

use super::*;

const ID: &str = "d-7f3c1a";
const TWILIO_URL: &str = "https://gw.example.com/hooks/twilio?tenant=acme";

struct Case {
    adapter: &'static str,
    /// As the operator writes them: old, new (rotation), and one that is not configured.
    secrets: [&'static str; 3],
    timestamped: bool,
    /// The header lists several signatures.
    listed: bool,
    body: &'static [u8],
    tampered: &'static [u8],
    /// The provider's documented algorithm: the encoded signature of a delivery.
    sign: fn(secret: &str, ts: u64, body: &[u8]) -> String,
    /// The request headers carrying these encoded signatures.
    headers: fn(sigs: &[String], ts: u64) -> HeaderMap,
}

const JSON: &[u8] = br#"{"id":"evt_1","amount":100}"#;
const JSON_TAMPERED: &[u8] = br#"{"id":"evt_1","amount":900}"#;

fn cases() -> Vec<Case> {
    vec![
        Case {
            adapter: "stripe",
            secrets: ["whsec_old", "whsec_new", "whsec_other"],
            timestamped: true,
            listed: true,
            body: JSON,
            tampered: JSON_TAMPERED,
            sign: |s, ts, body| {
                let msg = [format!("{ts}.").as_bytes(), body].concat();
                hex::encode(hmac_sha256(s.as_bytes(), &msg))
            },
            headers: |sigs, ts| {
                let mut v = format!("t={ts}");
                for s in sigs {
                    v.push_str(&format!(",v1={s}"));
                }
                headers(&[("stripe-signature", &v)])
            },
        },
        Case {
            adapter: "github",
            secrets: ["old", "new", "other"],
            timestamped: false,
            listed: false,
            body: JSON,
            tampered: JSON_TAMPERED,
            sign: |s, _, body| hex::encode(hmac_sha256(s.as_bytes(), body)),
            headers: |sigs, _| {
                headers(&[
                    ("x-hub-signature-256", &format!("sha256={}", sigs[0])),
                    ("x-github-delivery", ID),
                ])
            },
        },
        Case {
            adapter: "slack",
            secrets: ["old", "new", "other"],
            timestamped: true,
            listed: false,
            body: b"token=x&team_id=T1&text=hi",
            tampered: b"token=x&team_id=T2&text=hi",
            sign: |s, ts, body| {
                let msg = [format!("v0:{ts}:").as_bytes(), body].concat();
                hex::encode(hmac_sha256(s.as_bytes(), &msg))
            },
            headers: |sigs, ts| {
                headers(&[
                    ("x-slack-signature", &format!("v0={}", sigs[0])),
                    ("x-slack-request-timestamp", &ts.to_string()),
                ])
            },
        },
        Case {
            adapter: "standard-webhooks",
            secrets: [
                "whsec_b2xkLWtleS1vbGQta2V5LW9sZA==",
                "whsec_bmV3LWtleS1uZXcta2V5LW5ldw==",
                "whsec_b3RoZXIta2V5LW90aGVyLWtleQ==",
            ],
            timestamped: true,
            listed: true,
            body: JSON,
            tampered: JSON_TAMPERED,
            sign: |s, ts, body| {
                let key = base64::engine::general_purpose::STANDARD
                    .decode(s.strip_prefix("whsec_").unwrap())
                    .unwrap();
                let msg = [format!("{ID}.{ts}.").as_bytes(), body].concat();
                b64(&hmac_sha256(&key, &msg))
            },
            headers: |sigs, ts| {
                let v: Vec<String> = sigs.iter().map(|s| format!("v1,{s}")).collect();
                headers(&[
                    ("webhook-id", ID),
                    ("webhook-timestamp", &ts.to_string()),
                    ("webhook-signature", &v.join(" ")),
                ])
            },
        },
        Case {
            adapter: "shopify",
            secrets: ["old", "new", "other"],
            timestamped: false,
            listed: false,
            body: JSON,
            tampered: JSON_TAMPERED,
            sign: |s, _, body| b64(&hmac_sha256(s.as_bytes(), body)),
            headers: |sigs, _| {
                headers(&[
                    ("x-shopify-hmac-sha256", &sigs[0]),
                    ("x-shopify-webhook-id", ID),
                ])
            },
        },
        Case {
            adapter: "twilio",
            secrets: ["old-token", "new-token", "other-token"],
            timestamped: false,
            listed: false,
            body: b"To=%2B18005551212&From=%2B14158675310&Body=Hello+there",
            tampered: b"To=%2B18005551212&From=%2B14158675311&Body=Hello+there",
            // The URL, then the body's parameters sorted by name, name and value concatenated.
            sign: |s, _, _| {
                let msg = format!("{TWILIO_URL}BodyHello thereFrom+14158675310To+18005551212");
                b64(&hmac_sha1(s.as_bytes(), msg.as_bytes()))
            },
            headers: |sigs, _| {
                headers(&[
                    ("x-twilio-signature", &sigs[0]),
                    ("content-type", "application/x-www-form-urlencoded"),
                ])
            },
        },
    ]
}

impl Case {
    fn verifier(&self, secrets: &[&str]) -> WebhookVerifier {
        verifier(self.adapter, secrets)
    }
    fn signed(&self, secret: &str, ts: u64) -> HeaderMap {
        (self.headers)(&[(self.sign)(secret, ts, self.body)], ts)
    }
    fn verify(
        &self,
        v: &WebhookVerifier,
        h: &HeaderMap,
        body: &[u8],
        now: u64,
    ) -> Result<Verified, WebhookError> {
        v.verify(h, TWILIO_URL, body, at(now))
    }
}

#[test]
fn valid_delivery_is_accepted() {
    for c in cases() {
        let v = c.verifier(&[c.secrets[0]]);
        let got = c.verify(&v, &c.signed(c.secrets[0], NOW), c.body, NOW);
        let got = got.unwrap_or_else(|e| panic!("{}: {e}", c.adapter));
        assert_eq!(got.secret_index, 0, "{}", c.adapter);
        assert_eq!(got.timestamp.is_some(), c.timestamped, "{}", c.adapter);
        assert!(got.replay_key.starts_with(&format!("{}:", c.adapter)));
        if c.adapter != "stripe" && c.adapter != "slack" && c.adapter != "twilio" {
            assert_eq!(got.delivery_id.as_deref(), Some(ID), "{}", c.adapter);
        }
        // Timestamp + 300 s tolerance, or receipt + the 5 minute default window.
        assert_eq!(got.remember_until, at(NOW + 300), "{}", c.adapter);
    }
}

#[test]
fn tampered_body_is_refused() {
    for c in cases() {
        let v = c.verifier(&[c.secrets[0]]);
        let got = c.verify(&v, &c.signed(c.secrets[0], NOW), c.tampered, NOW);
        assert_eq!(got, Err(WebhookError::Mismatch), "{}", c.adapter);
    }
}

#[test]
fn stale_or_future_timestamp_is_refused() {
    for c in cases().into_iter().filter(|c| c.timestamped) {
        let v = c.verifier(&[c.secrets[0]]);
        for ts in [NOW - 301, NOW + 301, NOW - 86_400 * 365] {
            let got = c.verify(&v, &c.signed(c.secrets[0], ts), c.body, NOW);
            assert_eq!(
                got,
                Err(WebhookError::StaleTimestamp),
                "{} at {ts}",
                c.adapter
            );
        }
        for ts in [NOW - 300, NOW + 299] {
            assert!(
                c.verify(&v, &c.signed(c.secrets[0], ts), c.body, NOW)
                    .is_ok(),
                "{}",
                c.adapter
            );
        }
        // Changing the timestamp to a fresh one breaks the signature.
        let sig = (c.sign)(c.secrets[0], NOW - 1000, c.body);
        let got = c.verify(&v, &(c.headers)(&[sig], NOW), c.body, NOW);
        assert_eq!(got, Err(WebhookError::Mismatch), "{}", c.adapter);
    }
}

#[tokio::test]
async fn replay_is_refused() {
    for c in cases() {
        let a = authenticator(c.adapter, &[c.secrets[0]]);
        let h = c.signed(c.secrets[0], NOW);
        assert!(
            a.check(&h, c.body, TWILIO_URL, at(NOW)).await.is_ok(),
            "{}",
            c.adapter
        );
        let again = a.check(&h, c.body, TWILIO_URL, at(NOW + 10)).await;
        assert_eq!(again, Err(WebhookError::Replayed), "{}", c.adapter);
        if !c.timestamped {
            // Documented limit: nothing dates the message once the window has passed.
            assert!(a.check(&h, c.body, TWILIO_URL, at(NOW + 301)).await.is_ok());
        }
    }
}

#[test]
fn rotated_secret_is_accepted() {
    for c in cases() {
        let v = c.verifier(&[c.secrets[0], c.secrets[1]]);
        let got = c
            .verify(&v, &c.signed(c.secrets[1], NOW), c.body, NOW)
            .unwrap();
        assert_eq!(got.secret_index, 1, "{}", c.adapter);
        let got = c
            .verify(&v, &c.signed(c.secrets[0], NOW), c.body, NOW)
            .unwrap();
        assert_eq!(got.secret_index, 0, "{}", c.adapter);
        // Not configured: refused.
        let only_old = c.verifier(&[c.secrets[0]]);
        let got = c.verify(&only_old, &c.signed(c.secrets[1], NOW), c.body, NOW);
        assert_eq!(got, Err(WebhookError::Mismatch), "{}", c.adapter);
    }
}

#[test]
fn empty_truncated_or_wrong_signature_is_refused() {
    for c in cases() {
        let v = c.verifier(&[c.secrets[0]]);
        let good = (c.sign)(c.secrets[0], NOW, c.body);
        let wrong = (c.sign)(c.secrets[2], NOW, c.body);
        assert_eq!(wrong.len(), good.len());
        let half = good[..good.len() / 2].to_owned();
        for sigs in [
            vec![String::new()],
            vec![wrong.clone()],
            vec![half],
            vec!["!!".into()],
        ] {
            let got = c.verify(&v, &(c.headers)(&sigs, NOW), c.body, NOW);
            assert_eq!(got, Err(WebhookError::Mismatch), "{} {sigs:?}", c.adapter);
        }
        if c.listed {
            // One good entry among bad ones is enough.
            let sigs = vec![String::new(), wrong, good];
            assert!(c.verify(&v, &(c.headers)(&sigs, NOW), c.body, NOW).is_ok());
        }
    }
}

#[test]
fn too_many_or_repeated_signatures_are_refused() {
    for c in cases() {
        let v = c.verifier(&[c.secrets[0]]);
        let good = (c.sign)(c.secrets[0], NOW, c.body);
        if c.listed {
            let got = c.verify(&v, &(c.headers)(&vec![good.clone(); 17], NOW), c.body, NOW);
            assert_eq!(got, Err(WebhookError::TooManySignatures), "{}", c.adapter);
            assert!(c
                .verify(&v, &(c.headers)(&vec![good.clone(); 15], NOW), c.body, NOW)
                .is_ok());
        }
        // The signature header twice: ambiguous, refused.
        let mut h = (c.headers)(std::slice::from_ref(&good), NOW);
        let (name, value) = h
            .iter()
            .find(|(n, _)| v.adapter().signature.header.names.contains(n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .unwrap();
        h.append(name, value);
        let got = c.verify(&v, &h, c.body, NOW);
        assert!(
            matches!(got, Err(WebhookError::Malformed(_))),
            "{} {got:?}",
            c.adapter
        );
        // Longer than 4 KiB.
        let got = c.verify(&v, &(c.headers)(&["a".repeat(4100)], NOW), c.body, NOW);
        assert_eq!(got, Err(WebhookError::HeaderTooLong), "{}", c.adapter);
    }
}

#[test]
fn absent_signature_is_not_present() {
    for c in cases() {
        let v = c.verifier(&[c.secrets[0]]);
        let mut h = c.signed(c.secrets[0], NOW);
        for name in &v.adapter().signature.header.names {
            h.remove(name);
        }
        assert!(!v.is_present(&h));
        assert_eq!(
            c.verify(&v, &h, c.body, NOW),
            Err(WebhookError::NotPresent),
            "{}",
            c.adapter
        );
    }
}
