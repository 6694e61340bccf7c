use serde_json::json;

use super::*;

fn vars(list: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>()
        .into_iter()
}

#[test]
fn numeric_segments_are_split_from_plain_overrides() {
    let o = split(vars(&[
        ("PORTCULLIS__LISTEN__ADDR", "0.0.0.0:1"),
        ("PORTCULLIS__ROUTES__0__NAME", "x"),
        ("OTHER__ROUTES__0__NAME", "y"),
        ("PORTCULLIS__ROUTES__1__UPSTREAM__TIMEOUT", "5s"),
        // The config crate matches the prefix without case: so does the split.
        ("portcullis__routes__0__accept", "x"),
        ("portcullis__admin__addr", "x"),
    ]));
    assert_eq!(o.plain.len(), 2);
    assert!(o.plain.contains_key("PORTCULLIS__LISTEN__ADDR"));
    assert_eq!(o.indexed.len(), 3);
}

#[test]
fn an_existing_element_is_changed_in_place() {
    let mut tree =
        json!({"routes": [{"name": "a", "upstream": {"url": "http://x"}}, {"name": "b"}]});
    let p = apply_indexed(
        &mut tree,
        &[
            ("PORTCULLIS__ROUTES__0__NAME".into(), "renamed".into()),
            (
                "PORTCULLIS__ROUTES__0__UPSTREAM__TIMEOUT".into(),
                "5s".into(),
            ),
            (
                "PORTCULLIS__ROUTES__1__DANGEROUS_ALLOW_PLAINTEXT_CREDENTIALS".into(),
                "true".into(),
            ),
            ("portcullis__routes__1__plan".into(), "p".into()),
        ],
        "f.toml",
    );
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(tree["routes"][0]["name"], "renamed");
    assert_eq!(tree["routes"][0]["upstream"]["url"], "http://x");
    assert_eq!(tree["routes"][0]["upstream"]["timeout"], "5s");
    assert_eq!(tree["routes"][1]["plan"], "p");
    assert_eq!(
        tree["routes"][1]["dangerous_allow_plaintext_credentials"],
        true
    );
    assert_eq!(tree["routes"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_missing_element_or_a_non_array_is_a_clear_problem_not_a_new_shape() {
    let mut tree = json!({"routes": [{"name": "a"}], "listen": {"addr": "x"}});
    let before = tree.clone();
    let p = apply_indexed(
        &mut tree,
        &[
            ("PORTCULLIS__ROUTES__7__NAME".into(), "x".into()),
            ("PORTCULLIS__LISTEN__0__ADDR".into(), "x".into()),
            (
                "PORTCULLIS__ROUTES__99999999999999999999999__NAME".into(),
                "x".into(),
            ),
        ],
        "f.toml",
    );
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(
        p[0].message.contains("not add one (index 7)"),
        "{}",
        p[0].message
    );
    assert_eq!(p[0].key, "PORTCULLIS__ROUTES__7__NAME");
    assert!(
        p[1].message.contains("listen is not an array"),
        "{}",
        p[1].message
    );
    assert!(p[2].message.contains("too large"), "{}", p[2].message);
    assert_eq!(tree, before);
}
