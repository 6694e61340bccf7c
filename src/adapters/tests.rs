use std::time::Duration;

use super::*;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn problems_of(text: &str) -> Vec<String> {
    let dir = dir_with(&[("custom.toml", text)]);
    let err = builtin().unwrap().load_dir(dir.path()).unwrap_err();
    let prefix = format!("{}/", dir.path().display());
    err.0
        .iter()
        .map(|p| p.to_string().replace(&prefix, ""))
        .collect()
}

const MINIMAL: &str = r#"
family = "webhook"
signed = "{body}"
[signature]
header = "X-Sig"
algorithm = "hmac-sha256"
encoding = "hex"
"#;

#[test]
fn builtins_all_load() {
    let a = builtin().unwrap();
    for name in [
        "stripe",
        "github",
        "slack",
        "standard-webhooks",
        "shopify",
        "twilio",
    ] {
        let w = a.get_webhook(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(w.name(), name);
        assert!(w.description().is_some());
        assert!(a.get_ldap(name).is_none());
    }
    for name in ["zos-racf", "openldap", "active-directory"] {
        let l = a.get_ldap(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(l.name(), name);
        assert_eq!(a.get(name).unwrap().family(), "ldap");
    }
    assert_eq!(a.iter().count(), 9);
    assert!(a.get("nope").is_none());
}

#[test]
fn builtin_details() {
    let a = builtin().unwrap();
    let stripe = a.get_webhook("stripe").unwrap();
    assert_eq!(stripe.tolerance(), Some(Duration::from_secs(300)));
    assert!(matches!(
        stripe.timestamp.as_ref().unwrap().source,
        TimestampSource::SignatureEntry(ref p) if p == "t="
    ));
    assert_eq!(a.get_webhook("github").unwrap().tolerance(), None);
    assert!(!a.get_webhook("github").unwrap().id_is_signed());
    assert!(a.get_webhook("standard-webhooks").unwrap().id_is_signed());
    let twilio = a.get_webhook("twilio").unwrap();
    assert_eq!(twilio.signature.algorithm, Algorithm::HmacSha1);
    assert_eq!(twilio.signed, vec![SignedPart::Url, SignedPart::FormParams]);
    let racf = a.get_ldap("zos-racf").unwrap();
    assert_eq!(racf.bind(), BindMode::DnTemplate);
    assert_eq!(racf.user_case(), UserCase::Upper);
    assert_eq!(racf.max_user_len(), 8);
    assert_eq!(racf.group_attribute(), Some("racfconnectgroupname"));
    let ad = a.get_ldap("active-directory").unwrap();
    assert_eq!(ad.bind(), BindMode::Search);
    assert!(ad.user_filter().unwrap().contains("sAMAccountName={user}"));
    // Each shipped directory compares user names case-insensitively: one principal per user.
    assert_eq!(racf.principal_case(), PrincipalCase::Upper);
    assert_eq!(ad.principal_case(), PrincipalCase::Lower);
    assert_eq!(
        a.get_ldap("openldap").unwrap().principal_case(),
        PrincipalCase::Lower
    );
    assert_eq!(PrincipalCase::Lower.apply("aLiCe"), "alice");
    assert_eq!(PrincipalCase::Upper.apply("gwjob01"), "GWJOB01");
    assert_eq!(PrincipalCase::Exact.apply("aLiCe"), "aLiCe");
    // ASCII only: no Unicode folding merges another name into `k`.
    assert_eq!(PrincipalCase::Lower.apply("\u{212a}"), "\u{212a}");
}

#[test]
fn ldap_user_rules() {
    let a = builtin().unwrap();
    let racf = a.get_ldap("zos-racf").unwrap();
    assert_eq!(racf.normalize_user("ibmuser").as_deref(), Some("IBMUSER"));
    assert_eq!(racf.normalize_user("op#1").as_deref(), Some("OP#1"));
    assert_eq!(racf.normalize_user("toolonguser"), None);
    assert_eq!(racf.normalize_user("a,b=c"), None);
    assert_eq!(racf.normalize_user(""), None);
    let ol = a.get_ldap("openldap").unwrap();
    assert_eq!(ol.normalize_user("J.Doe").as_deref(), Some("J.Doe"));
    assert_eq!(ol.normalize_user("a\0b"), None);
}

#[test]
fn unknown_key_names_file_and_key() {
    let text = MINIMAL.replace("encoding = \"hex\"", "encoding = \"hex\"\nalgoritm = \"x\"");
    let p = problems_of(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("custom.toml: signature.algoritm: unknown field `algoritm`"),
        "{p:?}"
    );
    let p = problems_of(&format!("{MINIMAL}\n[extra]\nx = 1\n"));
    assert!(
        p[0].starts_with("custom.toml: extra: unknown field `extra`"),
        "{p:?}"
    );
}

#[test]
fn shape_errors_name_the_key() {
    let p = problems_of(&MINIMAL.replace("\"hmac-sha256\"", "\"hmac-md5\""));
    assert!(
        p[0].starts_with("custom.toml: signature.algorithm: unknown variant"),
        "{p:?}"
    );
    let p = problems_of(&MINIMAL.replace("family = \"webhook\"", "family = \"saml\""));
    assert_eq!(p, ["custom.toml: family: must be \"webhook\" or \"ldap\""]);
    let p = problems_of("family = \"webhook\"\nsigned = \n");
    assert!(p[0].starts_with("custom.toml: line 2: "), "{p:?}");
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let text = r#"
family = "webhook"
signed = "{ts}.{body}"
[signature]
header = "bad header"
separator = "ab"
algorithm = "hmac-sha256"
encoding = "hex"
[timestamp]
header = "X-Ts"
tolerance = "2h"
"#;
    let p = problems_of(text);
    let want = [
        "custom.toml: signature.header: `bad header` is not a valid header name",
        "custom.toml: signature.separator: must be one space or ASCII punctuation character",
        "custom.toml: timestamp.tolerance: must be between 1s and 1h",
        "custom.toml: signed: unknown placeholder `{ts}` (known: {timestamp}, {id}, {body}, {url}, {form_params})",
    ];
    for w in want {
        assert!(p.iter().any(|x| x == w), "missing {w:?} in {p:?}");
    }
}

#[test]
fn coverage_rules() {
    // A timestamp that is not signed proves nothing.
    let text = format!("{MINIMAL}[timestamp]\nheader = \"X-Ts\"\ntolerance = \"5m\"\n");
    let p = problems_of(&text);
    assert!(p[0].contains("signed: must contain {timestamp}"), "{p:?}");
    // The body must be signed one way or the other.
    let p = problems_of(&MINIMAL.replace("{body}", "v0"));
    assert!(
        p[0].contains("exactly one of {body} and {form_params}"),
        "{p:?}"
    );
    // {id} needs a source.
    let p = problems_of(&MINIMAL.replace("{body}", "{id}.{body}"));
    assert!(p[0].contains("{id} needs a [delivery_id] table"), "{p:?}");
    // from_signature needs a listed header.
    let text = MINIMAL.replace("{body}", "{timestamp}.{body}")
        + "[timestamp]\nfrom_signature = \"t=\"\ntolerance = \"5m\"\n";
    let p = problems_of(&text);
    assert!(p[0].contains("needs signature.separator"), "{p:?}");
}

#[test]
fn ldap_validation() {
    let text = r#"
family = "ldap"
bind = "dn-template"
dn_template = "uid={usr},{base_dn}"
user_case = "lower"
max_user_len = 0
"#;
    let p = problems_of(text);
    assert!(
        p.iter()
            .any(|x| x.contains("dn_template: must contain {user} exactly once")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|x| x.contains("unknown placeholder `{usr}`")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|x| x.contains("max_user_len: must be between")),
        "{p:?}"
    );
    let p = problems_of("family = \"ldap\"\nbind = \"search\"\nuser_case = \"lower\"\nmax_user_len = 8\nuser_filter = \"(uid={user})\"\npassword = \"x\"\n");
    assert!(
        p[0].starts_with("custom.toml: password: unknown field"),
        "{p:?}"
    );
}

#[test]
fn dir_file_overrides_builtin() {
    let github = MINIMAL.replace("X-Sig", "X-My-Signature");
    let dir = dir_with(&[
        ("github.toml", &github),
        ("acme.toml", MINIMAL),
        ("notes.txt", "ignored"),
        (".hidden.toml", "ignored"),
    ]);
    let mut a = builtin().unwrap();
    a.load_dir(dir.path()).unwrap();
    let gh = a.get_webhook("github").unwrap();
    assert_eq!(gh.signature.header.names[0].as_str(), "x-my-signature");
    assert!(a.get_webhook("acme").is_some());
    assert!(a.get_webhook("stripe").is_some());
    assert_eq!(a.iter().count(), 10);
}

#[test]
fn a_bad_dir_changes_nothing() {
    let dir = dir_with(&[("github.toml", MINIMAL), ("zz.toml", "family = 1")]);
    let mut a = builtin().unwrap();
    let err = a.load_dir(dir.path()).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert!(err
        .to_string()
        .ends_with("zz.toml: family: must be \"webhook\" or \"ldap\""));
    assert_eq!(
        a.get_webhook("github").unwrap().signature.header.names[0].as_str(),
        "x-hub-signature-256"
    );
    let dir = dir_with(&[("Bad_Name.toml", MINIMAL)]);
    assert!(a
        .load_dir(dir.path())
        .unwrap_err()
        .to_string()
        .contains("file name must be"));
    assert!(Adapters::load(Some(Path::new("/nonexistent/adapters"))).is_err());
}
