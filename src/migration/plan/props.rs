//! Property tests on the plan parser: arbitrary TOML-ish input never panics, and every refusal
//! names the key it is about (a TOML syntax error, which has no key, names its line).

use proptest::prelude::*;

use super::*;
use crate::config::props::tomlish;

const KEYS: &[&str] = &[
    "name",
    "owner",
    "description",
    "docs",
    "legacy_credentials",
    "[phases]",
    "observe",
    "bridge",
    "enforce",
    "phases.observe",
    "phases.bridge",
    "phases.enforce",
    "[exit_criteria]",
    "max_legacy_share",
    "window",
    "exit_criteria.window",
    "[exception]",
    "reason",
    "review_by",
    "exception.review_by",
    "unknown_key",
    "phases.unknown_key",
    "[[grace]]",
    "principal",
    "until",
    "grace.until",
    "grace.principal",
];

proptest! {
    // 256 cases in CI (proptest's default); PROPTEST_CASES=100000 runs longer.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn every_refusal_names_a_key(text in tomlish(KEYS)) {
        if let Err(problems) = parse_plan("plans/partner-api.toml", "partner-api", &text) {
            prop_assert!(!problems.is_empty());
            let is_toml = toml::from_str::<toml::Table>(&text).is_ok();
            for p in &problems {
                prop_assert!(!p.key.is_empty(), "{:?} in\n{}", p, text);
                prop_assert!(!is_toml || p.key != "-", "{:?} in\n{}", p, text);
                prop_assert!(p.file == "plans/partner-api.toml");
            }
        }
    }
}
