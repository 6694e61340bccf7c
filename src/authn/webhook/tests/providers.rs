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

/// Ways to re-spell a valid signature header. Whether each may still verify is what the
/// provider's documentation (and its own libraries) say: see `respell`.
#[derive(Debug, Clone, Copy)]
enum Respell {
    /// The encoded signature in upper case.
    UpperSignature,
    /// The scheme prefix (`v1=`, `sha256=`, …) in upper case.
    UpperPrefix,
    /// A space after each separator.
    SpaceAfterSeparator,
    /// A tab after each separator.
    TabAfterSeparator,
    /// The signature entry listed twice.
    DuplicateEntry,
    /// Separators before, between and after the entries.
    ExtraSeparators,
    /// Whitespace around the whole value (not part of a field value: RFC 9110 §5.5).
    OuterWhitespace,
}

/// The re-spelled header value and whether the provider accepts it.
fn respell(c: &Case, value: &str, sig: &str, how: Respell) -> (String, bool) {
    let adapter = adapter(c.adapter);
    let sep = adapter.signature.separator;
    let prefix = adapter.signature.prefix.clone().unwrap_or_default();
    let entry = format!("{prefix}{sig}");
    match (how, sep) {
        (Respell::UpperSignature, _) => (value.replace(sig, &sig.to_ascii_uppercase()), false),
        (Respell::UpperPrefix, _) if prefix.is_empty() => (value.to_string(), true),
        (Respell::UpperPrefix, _) => (
            value.replace(&entry, &format!("{}{sig}", prefix.to_ascii_uppercase())),
            false,
        ),
        // Stripe's header is `t=…,v1=…`: no whitespace (its libraries split on "," and compare
        // keys exactly). For Standard Webhooks the separator is a space: one more is an empty
        // entry, as below.
        (Respell::SpaceAfterSeparator, Some(s)) => {
            (spaced(value, &entry, &prefix, s, ' '), s == ' ')
        }
        (Respell::TabAfterSeparator, Some(s)) => (spaced(value, &entry, &prefix, s, '\t'), false),
        // Several entries of the scheme are how rotation works: any match is enough.
        (Respell::DuplicateEntry, Some(s)) => (format!("{value}{s}{entry}"), true),
        // Empty entries carry nothing and are skipped (Stripe's and Svix's libraries do).
        (Respell::ExtraSeparators, Some(s)) => (
            format!("{s}{}{s}{s}", value.replace(s, &format!("{s}{s}"))),
            true,
        ),
        // A header that holds one signature holds exactly one.
        (Respell::SpaceAfterSeparator | Respell::TabAfterSeparator, None) => {
            (format!("{value},\t{entry}"), false)
        }
        (Respell::DuplicateEntry, None) => (format!("{value},{entry}"), false),
        (Respell::ExtraSeparators, None) => (format!("{value},"), false),
        (Respell::OuterWhitespace, _) => (format!(" \t{value} "), true),
    }
}

/// `ws` between the separator and the signature entry. A header holding only that entry gets a
/// dud entry first, so that the whitespace is inside the value, not around it.
fn spaced(value: &str, entry: &str, prefix: &str, sep: char, ws: char) -> String {
    let v = value.replace(entry, &format!("{ws}{entry}"));
    if v.starts_with(ws) {
        format!("{prefix}dud{sep}{v}")
    } else {
        v
    }
}

fn any_respell() -> impl Strategy<Value = Respell> {
    prop::sample::select(vec![
        Respell::UpperSignature,
        Respell::UpperPrefix,
        Respell::SpaceAfterSeparator,
        Respell::TabAfterSeparator,
        Respell::DuplicateEntry,
        Respell::ExtraSeparators,
        Respell::OuterWhitespace,
    ])
}

/// Characters signature headers are made of, and some they are not.
const HEADER_CHARS: &[char] = &[
    't', '=', ',', ' ', '\t', 'v', '1', '0', 's', 'h', 'a', '2', '5', '6', 'f', 'F', '+', '/', ';',
    '"', '~', 'x', '9',
];

use proptest::prelude::*;

proptest! {
    // 256 cases in CI (proptest's default); PROPTEST_CASES=100000 runs longer.
    #![proptest_config(ProptestConfig::default())]

    /// A valid signature, re-spelled, verifies exactly where the provider says the spelling is
    /// the same signature; everything else is refused.
    #[test]
    fn respelled_signatures_verify_only_where_the_provider_says_so(
        provider in 0..6usize,
        how in any_respell(),
    ) {
        let c = cases().remove(provider);
        let v = c.verifier(&[c.secrets[0]]);
        let sig = (c.sign)(c.secrets[0], NOW, c.body);
        let mut h = (c.headers)(std::slice::from_ref(&sig), NOW);
        let name = v.adapter().signature.header.names[0].clone();
        let value = h.get(&name).unwrap().to_str().unwrap().to_string();
        let (respelled, accepted) = respell(&c, &value, &sig, how);
        h.insert(name, HeaderValue::from_str(&respelled).unwrap());
        let got = c.verify(&v, &h, c.body, NOW);
        prop_assert_eq!(got.is_ok(), accepted, "{} {:?}: {:?} -> {:?}", c.adapter, how, respelled, got);
    }

    /// Arbitrary signature, timestamp and id header values never panic and never verify.
    #[test]
    fn arbitrary_header_values_never_verify(
        provider in 0..6usize,
        sig in prop::collection::vec(prop::sample::select(HEADER_CHARS), 0..120),
        raw in prop::collection::vec(any::<u8>(), 0..80),
        ts in prop::collection::vec(prop::sample::select(HEADER_CHARS), 0..16),
    ) {
        let c = cases().remove(provider);
        let v = c.verifier(&[c.secrets[0]]);
        let a = v.adapter();
        let sig: String = sig.into_iter().collect();
        let ts: String = ts.into_iter().collect();
        let mut values = vec![HeaderValue::from_str(&sig).unwrap()];
        values.extend(HeaderValue::from_bytes(&raw).ok());
        for value in values {
            let mut h = c.signed(c.secrets[0], NOW);
            h.insert(a.signature.header.names[0].clone(), value.clone());
            prop_assert!(c.verify(&v, &h, c.body, NOW).is_err(), "{} {:?}", c.adapter, value);
            // The timestamp and id headers garbled too (where the provider has them).
            let ts_value = HeaderValue::from_str(&ts).unwrap();
            if let Some(crate::adapters::TimestampSource::Header(spec)) =
                a.timestamp.as_ref().map(|t| &t.source)
            {
                h.insert(spec.names[0].clone(), ts_value.clone());
            }
            if let Some(spec) = &a.delivery_id {
                h.insert(spec.names[0].clone(), value.clone());
            }
            prop_assert!(c.verify(&v, &h, &raw, NOW).is_err(), "{} {:?}", c.adapter, value);
        }
    }
}
