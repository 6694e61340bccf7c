use std::fs::File;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::reload::Reload as _;
use crate::time::Date;

const KEY: &str = "pcs_k8J2mQ0xV7nR4tY1wE9uI3oP6aS5dF0gH2jK4lZ7xC8";
const OLD_KEY: &str = "legacy-partner-key-0001";

fn keys_toml() -> String {
    format!(
        r#"
[[keys]]
id = "acme"
sha256 = "{}"
identity = "spiffe://corp.example/partner/acme"
owner = "partners-team"

[[keys]]
id = "old-acme"
sha256 = "{}"
identity = "spiffe://corp.example/partner/acme"
expires = 2026-03-31
"#,
        hex::encode(hash_key(KEY.as_bytes())),
        hex::encode(hash_key(OLD_KEY.as_bytes())).to_uppercase(),
    )
}

/// Write `text` and move the modification time, so a change shows whatever the file system's
/// timestamp granularity.
fn write(path: &Path, text: &str, tick: u64) {
    std::fs::write(path, text).unwrap();
    let t = UNIX_EPOCH + Duration::from_secs(1_900_000_000 + tick);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn store(dir: &tempfile::TempDir) -> Arc<KeyStore> {
    let path = dir.path().join("api-keys.toml");
    write(&path, &keys_toml(), 0);
    Arc::new(KeyStore::load(&path).unwrap())
}

fn auth(keys: Arc<KeyStore>) -> ApiKeyAuthenticator {
    ApiKeyAuthenticator::new(
        Arc::from("partner-keys"),
        HeaderName::from_static("x-api-key"),
        Some("api_key".into()),
        keys,
    )
}

fn req(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

/// 2026-03-31T12:00:00Z and friends.
fn day(y_m_d: &str, secs_into_day: u64) -> SystemTime {
    Date::parse(y_m_d).unwrap().end_of_day_utc() - Duration::from_secs(86_400)
        + Duration::from_secs(secs_into_day)
}

fn now() -> SystemTime {
    day("2026-03-01", 0)
}

fn refused(o: Outcome) -> Refusal {
    match o {
        Outcome::Rejected(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn valid_key_in_header() {
    let dir = tempfile::tempdir().unwrap();
    let a = auth(store(&dir));
    match a.check(&req("/x", &[("x-api-key", KEY)]), now()) {
        Outcome::Authenticated(c) => {
            assert_eq!(c.kind, Kind::ApiKey);
            assert_eq!(&*c.name, "partner-keys");
            assert_eq!(c.principal.as_deref(), Some("acme"));
            assert_eq!(c.identity, "spiffe://corp.example/partner/acme");
            assert!(c.groups.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn through_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<dyn Authenticator> = Arc::new(auth(store(&dir)));
    let conn = ConnInfo::for_tests(None);
    let r = req("/x?api_key=nope", &[]);
    let got = refused(a.authenticate(&r, &conn, now()).await);
    assert_eq!(got.code, Code::InvalidCredential);
    let r = req("/x", &[]);
    assert!(matches!(
        a.authenticate(&r, &conn, now()).await,
        Outcome::NotPresent
    ));
    assert_eq!(a.challenge().unwrap(), "ApiKey header=\"x-api-key\"");
    // Through the route's accept list: none present → 401 with the challenge.
    let r = crate::authn::authenticate(std::slice::from_ref(&a), &r, &conn, now(), None)
        .await
        .unwrap_err();
    assert_eq!(r.code, Code::Unauthenticated);
    assert_eq!(r.challenges.len(), 1);
}

#[test]
fn wrong_empty_or_long_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = auth(store(&dir));
    let long = "a".repeat(MAX_KEY_LEN + 1);
    let almost = &KEY[..KEY.len() - 1];
    for k in ["wrong", almost, "", long.as_str(), &format!("{KEY} ")] {
        let r = refused(a.check(&req("/x", &[("x-api-key", k)]), now()));
        assert_eq!(r.code, Code::InvalidCredential, "{k:?}");
        assert!(!r.detail.contains(k) || k.is_empty());
    }
    // Within the bound, a long key is hashed and simply not found.
    let max = "b".repeat(MAX_KEY_LEN);
    let r = refused(a.check(&req("/x", &[("x-api-key", &max)]), now()));
    assert_eq!(r.detail, "API key not recognised");
}

#[test]
fn expired_key_is_refused_after_its_last_day() {
    let dir = tempfile::tempdir().unwrap();
    let a = auth(store(&dir));
    let r = req("/x", &[("x-api-key", OLD_KEY)]);
    // Valid through 2026-03-31 23:59:59 UTC.
    for t in [now(), day("2026-03-31", 86_399)] {
        assert!(matches!(a.check(&r, t), Outcome::Authenticated(_)));
    }
    for t in [day("2026-04-01", 0), day("2027-01-01", 0)] {
        let got = refused(a.check(&r, t));
        assert_eq!(got.code, Code::InvalidCredential);
        assert_eq!(got.detail, "API key expired");
    }
}

#[test]
fn query_parameter_is_read_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let a = auth(store(&dir));
    // An encoded name and an encoded value are both read as a backend would read them.
    let enc_key = KEY.replace('_', "%5F");
    for uri in [
        format!("/x?a=1&api_key={KEY}&b=2"),
        format!("/x?api%5Fkey={enc_key}"),
        format!("/x?API.KEY={KEY}"),
    ] {
        assert!(
            matches!(a.check(&req(&uri, &[]), now()), Outcome::Authenticated(_)),
            "{uri}"
        );
    }
    // Not configured for the query: the parameter is not a credential.
    let header_only = ApiKeyAuthenticator::new(
        Arc::from("k"),
        HeaderName::from_static("x-api-key"),
        None,
        a.keys().clone(),
    );
    let r = req(&format!("/x?api_key={KEY}"), &[]);
    assert!(matches!(header_only.check(&r, now()), Outcome::NotPresent));
}

#[test]
fn key_presented_twice_is_a_bad_request() {
    let dir = tempfile::tempdir().unwrap();
    let a = auth(store(&dir));
    let cases = [
        req(&format!("/x?api_key={KEY}"), &[("x-api-key", KEY)]),
        req("/x", &[("x-api-key", KEY), ("x-api-key", KEY)]),
        req(&format!("/x?api_key={KEY}&api_key={KEY}"), &[]),
        req(&format!("/x?api_key={KEY}&api%5Fkey=other"), &[]),
    ];
    for r in cases {
        assert_eq!(
            refused(a.check(&r, now())).code,
            Code::InvalidRequest,
            "{}",
            r.uri
        );
    }
}

#[test]
fn strip_removes_header_and_every_spelling_of_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let a = auth(store(&dir));
    let mut r = req(
        "/p/a%2Fb?z=%2F%20x&api_key=K&a=1&&b=+&api%5Fkey=L&Api.Key=M&c;api_key=N",
        &[
            ("x-api-key", KEY),
            ("x-api-key", "again"),
            ("x-other", "kept"),
        ],
    );
    a.strip(&mut r);
    assert!(r.headers.get("x-api-key").is_none());
    assert_eq!(r.headers.get("x-other").unwrap(), "kept");
    assert_eq!(r.uri, "/p/a%2Fb?z=%2F%20x&a=1&&b=+&c");

    // Only the key: no `?` left.
    let mut r = req("/p?api_key=K", &[]);
    a.strip(&mut r);
    assert_eq!(r.uri.to_string(), "/p");

    // Absolute form (HTTP/2, proxies): scheme and authority kept.
    let mut r = req("https://gw.example:8443/p?x=1&api_key=K", &[]);
    a.strip(&mut r);
    assert_eq!(r.uri.to_string(), "https://gw.example:8443/p?x=1");

    // Nothing to strip: untouched.
    let mut r = req("/p?x=1&&api_keys=2", &[]);
    a.strip(&mut r);
    assert_eq!(r.uri.to_string(), "/p?x=1&&api_keys=2");
}

#[test]
fn malformed_file_reports_every_problem() {
    let text = r#"
extra = 1
[[keys]]
id = "a b"
sha256 = "not-hex"
identity = "https://corp.example/x"
expires = "2026-02-30"
colour = "red"

[[keys]]
sha256 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
identity = "spiffe://corp.example/ok"
owner = 3

[[keys]]
id = "dup"
sha256 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
identity = "spiffe://corp.example/ok"

[[keys]]
id = "dup"
sha256 = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
identity = "spiffe://corp.example/ok"
"#;
    let err = Keys::parse(text, "keys.toml").unwrap_err();
    let got: Vec<String> = err
        .0
        .iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    let want_keys = [
        "extra",
        "keys[0].colour",
        "keys[0].id",
        "keys[0].sha256",
        "keys[0].identity",
        "keys[0].expires",
        "keys[1].id",
        "keys[1].owner",
        "keys[2].sha256",
        "keys[3].id",
    ];
    assert_eq!(got.len(), want_keys.len(), "{got:#?}");
    for k in want_keys {
        assert!(
            got.iter().any(|g| g.starts_with(&format!("{k}: "))),
            "{k} in {got:#?}"
        );
    }
    assert!(err.0.iter().all(|p| p.file == "keys.toml"));
    assert!(got.contains(&"keys[3].id: duplicate of keys[2].id".to_string()));
    assert!(err
        .to_string()
        .contains("keys.toml: keys[0].sha256: must be 64 hex digits"));

    // Not TOML at all.
    let err = Keys::parse("[[keys]\n", "k.toml").unwrap_err();
    assert_eq!(err.0.len(), 1);
    // An empty file is valid: no keys, every key refused.
    assert!(Keys::parse("", "k.toml").unwrap().entries().is_empty());
    // Missing file.
    assert!(KeyStore::load(Path::new("/nonexistent/keys.toml")).is_err());
}

#[test]
fn dates() {
    assert_eq!(
        Date::parse("1970-01-01").unwrap().end_of_day_utc(),
        UNIX_EPOCH + Duration::from_secs(86_400)
    );
    // 2024-02-29 is a leap day; 2000-01-01 is day 10957.
    assert!(Date::parse("2024-02-29").is_some());
    assert_eq!(
        Date::parse("2000-01-01").unwrap().end_of_day_utc(),
        UNIX_EPOCH + Duration::from_secs(10_958 * 86_400)
    );
    for bad in [
        "2023-02-29",
        "2026-13-01",
        "2026-1-01",
        "26-01-01",
        "2026-01-01T00:00:00Z",
        "1969-12-31",
        "+026-01-01",
    ] {
        assert!(parse_expires(bad).is_none(), "{bad}");
    }
}

#[test]
fn reload_installs_good_files_and_keeps_keys_on_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let keys = store(&dir);
    let path = keys.path().to_path_buf();
    let a = auth(keys.clone());
    let new_key = "pcs_freshly-rotated-key";
    let r_old = req("/x", &[("x-api-key", KEY)]);
    let r_new = req("/x", &[("x-api-key", new_key)]);
    assert!(!keys.poll(), "unchanged file: nothing to do");

    // A bad edit: logged, the old keys stay.
    write(&path, "[[keys]]\nid = \"x\"\n", 1);
    keys.poll_files();
    assert!(matches!(a.check(&r_old, now()), Outcome::Authenticated(_)));

    // A good edit: the new key works, the removed one no longer does.
    let good = format!(
        "[[keys]]\nid = \"rotated\"\nsha256 = \"{}\"\nidentity = \"spiffe://corp.example/partner/acme\"\n",
        hex::encode(hash_key(new_key.as_bytes()))
    );
    write(&path, &good, 2);
    assert!(keys.poll());
    match a.check(&r_new, now()) {
        Outcome::Authenticated(c) => assert_eq!(c.principal.as_deref(), Some("rotated")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        refused(a.check(&r_old, now())).code,
        Code::InvalidCredential
    );

    // The file disappears: the keys stay.
    std::fs::remove_file(&path).unwrap();
    assert!(!keys.poll());
    assert!(matches!(a.check(&r_new, now()), Outcome::Authenticated(_)));
}

#[test]
fn lookup_finds_each_key_among_many() {
    let mut text = String::new();
    for i in 0..500 {
        text.push_str(&format!(
            "[[keys]]\nid = \"k{i}\"\nsha256 = \"{}\"\nidentity = \"spiffe://corp.example/p/{i}\"\n",
            hex::encode(hash_key(format!("key-{i}").as_bytes()))
        ));
    }
    let keys = Keys::parse(&text, "k.toml").unwrap();
    for i in [0, 1, 250, 499] {
        let e = keys.find(&hash_key(format!("key-{i}").as_bytes())).unwrap();
        assert_eq!(e.id, format!("k{i}"));
    }
    assert!(keys.find(&hash_key(b"key-500")).is_none());
}
