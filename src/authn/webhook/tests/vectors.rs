//! Published test vectors, and provider-specific rules.

use super::*;

/// standard-webhooks README / spec example.
#[test]
fn standard_webhooks_published_vector() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"test": 2432232314}"#;
    let h = headers(&[
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        (
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ]);
    let v = verifier("standard-webhooks", &[secret]);
    let got = v.verify(&h, "", body, at(1_614_265_330)).unwrap();
    assert_eq!(
        got.delivery_id.as_deref(),
        Some("msg_p5jXN8AQM9LWM0D4loKWxJek")
    );
    assert_eq!(
        got.replay_key,
        "standard-webhooks:id:1614265330:msg_p5jXN8AQM9LWM0D4loKWxJek"
    );
    assert_eq!(got.remember_until, at(1_614_265_330 + 300));
    // The same message under the Svix header names.
    let svix = headers(&[
        ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("svix-timestamp", "1614265330"),
        (
            "svix-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ]);
    assert!(v.verify(&svix, "", body, at(1_614_265_330)).is_ok());
    // A secret pasted without its prefix is the same key.
    let bare = verifier("standard-webhooks", &["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
    assert!(bare.verify(&h, "", body, at(1_614_265_330)).is_ok());
    // The id is signed.
    let mut other = h.clone();
    other.insert("webhook-id", HeaderValue::from_static("msg_other"));
    assert_eq!(
        v.verify(&other, "", body, at(1_614_265_330)),
        Err(WebhookError::Mismatch)
    );
    // An asymmetric v1a entry is another scheme: ignored, the v1 one still matches.
    let mut mixed = h.clone();
    mixed.insert(
        "webhook-signature",
        HeaderValue::from_static("v1a,AAAA v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
    );
    assert!(v.verify(&mixed, "", body, at(1_614_265_330)).is_ok());
    mixed.insert("webhook-signature", HeaderValue::from_static("v1a,AAAA"));
    assert_eq!(
        v.verify(&mixed, "", body, at(1_614_265_330)),
        Err(WebhookError::NoSignature)
    );
}

/// docs.github.com, "Validating webhook deliveries".
#[test]
fn github_published_vector() {
    let h = headers(&[(
        "X-Hub-Signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )]);
    let v = verifier("github", &["It's a Secret to Everybody"]);
    let got = v.verify(&h, "", b"Hello, World!", at(NOW)).unwrap();
    assert_eq!(got.delivery_id, None);
    assert!(got.replay_key.starts_with("github:sig:"));
    // Upper-case hex is not GitHub's signature: GitHub sends lower case and its reference code
    // compares the text (`sha256=` + hexdigest), so a signature has exactly one spelling.
    let upper = headers(&[(
        "X-Hub-Signature-256",
        "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17",
    )]);
    assert_eq!(
        v.verify(&upper, "", b"Hello, World!", at(NOW)),
        Err(WebhookError::Mismatch)
    );
    // The legacy SHA-1 header is not accepted in its place.
    let sha1 = headers(&[("X-Hub-Signature", "sha1=0123")]);
    assert_eq!(
        v.verify(&sha1, "", b"Hello, World!", at(NOW)),
        Err(WebhookError::NotPresent)
    );
}

/// api.slack.com, "Verifying requests from Slack".
#[test]
fn slack_published_vector() {
    let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let h = headers(&[
        ("X-Slack-Request-Timestamp", "1531420618"),
        (
            "X-Slack-Signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
    ]);
    let v = verifier("slack", &["8f742231b10e8888abcd99yyyzzz85a5"]);
    assert!(v.verify(&h, "", body, at(1_531_420_618)).is_ok());
    assert_eq!(
        v.verify(&h, "", body, at(NOW)),
        Err(WebhookError::StaleTimestamp)
    );
}

/// twilio.com, "Webhooks security": the worked example (form parameters sorted by name).
#[test]
fn twilio_published_vector() {
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    let body = b"Digits=1234&To=%2B18005551212&From=%2B12349013030&Caller=%2B12349013030&CallSid=CA1234567890ABCDE";
    let h = headers(&[
        ("X-Twilio-Signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        (
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
    ]);
    let v = verifier("twilio", &["12345"]);
    assert!(v.verify(&h, url, body, at(NOW)).is_ok());
    // Another URL (the query is signed too) or another parameter value: refused.
    let moved = "https://mycompany.com/myapp.php?foo=1&bar=3";
    assert_eq!(
        v.verify(&h, moved, body, at(NOW)),
        Err(WebhookError::Mismatch)
    );
    let extra = [body.as_slice(), b"&Extra=1"].concat();
    assert_eq!(
        v.verify(&h, url, &extra, at(NOW)),
        Err(WebhookError::Mismatch)
    );
}

#[test]
fn twilio_json_body_is_covered_by_body_sha256() {
    let body = br#"{"CallSid":"CA1"}"#;
    let digest = hex::encode(<Sha256 as sha2::Digest>::digest(body));
    let url = format!("https://gw.example.com/hooks/twilio?bodySHA256={digest}");
    let sig = b64(&hmac_sha1(b"tok", url.as_bytes()));
    let h = headers(&[
        ("X-Twilio-Signature", &sig),
        ("Content-Type", "application/json"),
    ]);
    let v = verifier("twilio", &["tok"]);
    assert!(v.verify(&h, &url, body, at(NOW)).is_ok());
    // A different body under the same signed URL: its hash no longer matches.
    assert_eq!(
        v.verify(&h, &url, br#"{"CallSid":"CA2"}"#, at(NOW)),
        Err(WebhookError::BodyNotSigned)
    );
    // A JSON body without the hash parameter would not be signed at all.
    let bare = "https://gw.example.com/hooks/twilio";
    let sig = b64(&hmac_sha1(b"tok", bare.as_bytes()));
    let h = headers(&[
        ("X-Twilio-Signature", &sig),
        ("Content-Type", "application/json"),
    ]);
    assert_eq!(
        v.verify(&h, bare, body, at(NOW)),
        Err(WebhookError::BodyNotSigned)
    );
    // A GET with no body signs the URL alone.
    assert!(v.verify(&h, bare, b"", at(NOW)).is_ok());
}

#[test]
fn stripe_rules() {
    let v = verifier("stripe", &["whsec_test"]);
    let body = br#"{"id":"evt_1"}"#;
    let sig = |ts: u64| {
        hex::encode(hmac_sha256(
            b"whsec_test",
            &[format!("{ts}.").as_bytes(), body].concat(),
        ))
    };
    let s = sig(NOW);
    // v0 (legacy test-mode scheme) entries are ignored, whatever they hold.
    let h = headers(&[("Stripe-Signature", &format!("t={NOW},v0=deadbeef,v1={s}"))]);
    assert!(v.verify(&h, "", body, at(NOW)).is_ok());
    let h = headers(&[("Stripe-Signature", &format!("t={NOW},v0={s}"))]);
    assert_eq!(
        v.verify(&h, "", body, at(NOW)),
        Err(WebhookError::NoSignature)
    );
    // The timestamp must be there once, and be plain unix seconds.
    let h = headers(&[("Stripe-Signature", &format!("v1={s}"))]);
    assert_eq!(
        v.verify(&h, "", body, at(NOW)),
        Err(WebhookError::MissingTimestamp)
    );
    let h = headers(&[("Stripe-Signature", &format!("t={NOW},t={NOW},v1={s}"))]);
    assert!(matches!(
        v.verify(&h, "", body, at(NOW)),
        Err(WebhookError::Malformed(_))
    ));
    let h = headers(&[("Stripe-Signature", &format!("t=+{NOW},v1={s}"))]);
    assert!(matches!(
        v.verify(&h, "", body, at(NOW)),
        Err(WebhookError::Malformed(_))
    ));
    // Stripe's 300 s default can be overridden per credential.
    let strict = WebhookVerifier::new(
        adapter("stripe"),
        vec![WebhookSecret::new("whsec_test")],
        Some(Duration::from_secs(60)),
    )
    .unwrap();
    let h = headers(&[(
        "Stripe-Signature",
        &format!("t={},v1={}", NOW - 61, sig(NOW - 61)),
    )]);
    assert_eq!(
        strict.verify(&h, "", body, at(NOW)),
        Err(WebhookError::StaleTimestamp)
    );
    assert!(v.verify(&h, "", body, at(NOW)).is_ok());
}

/// Stripe sends one `v1` per active secret while rolling. Dropping one of them from a captured
/// header must not make the message new to the replay guard.
#[tokio::test]
async fn stripping_a_signature_is_still_a_replay() {
    let a = authenticator("stripe", &["whsec_a", "whsec_b"]);
    let body = br#"{"id":"evt_2"}"#;
    let msg = [format!("{NOW}.").as_bytes(), body].concat();
    let sa = hex::encode(hmac_sha256(b"whsec_a", &msg));
    let sb = hex::encode(hmac_sha256(b"whsec_b", &msg));
    let both = headers(&[("Stripe-Signature", &format!("t={NOW},v1={sa},v1={sb}"))]);
    let only_b = headers(&[("Stripe-Signature", &format!("t={NOW},v1={sb}"))]);
    assert!(a.check(&both, body, "", at(NOW)).await.is_ok());
    assert_eq!(
        a.check(&only_b, body, "", at(NOW)).await,
        Err(WebhookError::Replayed)
    );
}

/// A provider retry carries the same id with a fresh timestamp and signature: not a replay.
#[tokio::test]
async fn standard_webhooks_retry_is_not_a_replay() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    let a = authenticator("standard-webhooks", &[secret]);
    let body = b"{}";
    let delivery = |ts: u64| {
        let sig = b64(&hmac_sha256(&key, format!("msg_1.{ts}.{{}}").as_bytes()));
        headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &ts.to_string()),
            ("webhook-signature", &format!("v1,{sig}")),
        ])
    };
    assert!(a.check(&delivery(NOW), body, "", at(NOW)).await.is_ok());
    assert_eq!(
        a.check(&delivery(NOW), body, "", at(NOW + 5)).await,
        Err(WebhookError::Replayed)
    );
    assert!(a
        .check(&delivery(NOW + 5), body, "", at(NOW + 5))
        .await
        .is_ok());
    // The id is required: it is part of the signed content.
    let mut h = delivery(NOW + 9);
    h.remove("webhook-id");
    assert_eq!(
        a.check(&h, body, "", at(NOW + 9)).await,
        Err(WebhookError::MissingId)
    );
}

/// GitHub's delivery id is not signed: changing it must not make a captured delivery new.
#[tokio::test]
async fn unsigned_delivery_id_does_not_key_replays() {
    let a = authenticator("github", &["s"]);
    let body = b"{}";
    let sig = format!("sha256={}", hex::encode(hmac_sha256(b"s", body)));
    let first = headers(&[("x-hub-signature-256", &sig), ("x-github-delivery", "id-1")]);
    let renamed = headers(&[("x-hub-signature-256", &sig), ("x-github-delivery", "id-2")]);
    assert!(a.check(&first, body, "", at(NOW)).await.is_ok());
    assert_eq!(
        a.check(&renamed, body, "", at(NOW)).await,
        Err(WebhookError::Replayed)
    );
    // A malformed id is refused rather than logged.
    let bad = headers(&[("x-hub-signature-256", &sig), ("x-github-delivery", "a b")]);
    assert!(matches!(
        a.check(&bad, body, "", at(NOW)).await,
        Err(WebhookError::Malformed(_))
    ));
}
