//! Property tests on the config checker: arbitrary TOML-ish input never panics, and every
//! refusal names the key it is about (a TOML syntax error, which has no key, names its line).

use std::path::Path;

use proptest::prelude::*;

use super::*;

/// Values of every TOML type, plausible and not.
const VALUES: &[&str] = &[
    "\"a\"",
    "\"\"",
    "0",
    "-1",
    "1.5",
    "true",
    "[]",
    "[\"a\", \"b\"]",
    "[1, \"a\"]",
    "{}",
    "{ path_prefix = \"/\" }",
    "2026-11-01",
    "2026-11-01T10:00:00Z",
    "\"2s\"",
    "\"-5s\"",
    "\"1KiB\"",
    "\"127.0.0.1:0\"",
    "\"http://127.0.0.1:1\"",
    "\"spiffe://corp.example/x\"",
    "\"/nonexistent/file.pem\"",
    "\"\\u0000\"",
    "nan",
    "inf",
    "99999999999999999999",
];

/// TOML-ish text: `key = value` lines and table headers drawn from `keys`, in any order, with
/// now and then a line of arbitrary characters.
pub(crate) fn tomlish(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let line = prop_oneof![
        8 => (prop::sample::select(keys), prop::sample::select(VALUES))
            .prop_map(|(k, v)| if k.starts_with('[') { k.to_string() } else { format!("{k} = {v}") }),
        1 => "[ -~]{0,24}",
    ];
    prop::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
}

const KEYS: &[&str] = &[
    "version",
    "[listen]",
    "addr",
    "listen.addr",
    "listen.header_timeout",
    "listen.max_headers",
    "listen.max_connections",
    "listen.max_header_bytes",
    "[listen.tls]",
    "cert",
    "key",
    "[admin]",
    "admin.addr",
    "[audit]",
    "sink",
    "audit.sink",
    "[[routes]]",
    "name",
    "match",
    "match.path_prefix",
    "upstream.url",
    "upstream.timeout",
    "limits.max_body",
    "allow",
    "credentials",
    "[credentials.keys]",
    "kind",
    "identity",
    "file",
    "[issuer]",
    "url",
    "ttl",
    "keys",
    "[state]",
    "backend",
    "[trust]",
    "unknown_key",
];

proptest! {
    // 256 cases in CI (proptest's default); PROPTEST_CASES=100000 runs longer.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn every_refusal_names_a_key(text in tomlish(KEYS)) {
        let origin = Path::new("/nonexistent/portcullis.toml");
        if let Err(Invalid(problems)) = from_toml_str(&text, origin) {
            prop_assert!(!problems.is_empty());
            let is_toml = toml::from_str::<toml::Table>(&text).is_ok();
            for p in &problems {
                prop_assert!(!p.key.is_empty(), "{:?} in\n{}", p, text);
                prop_assert!(!is_toml || p.key != "-", "{:?} in\n{}", p, text);
            }
        }
    }
}
