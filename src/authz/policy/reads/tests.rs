use super::*;

fn reads(text: &str) -> Reads {
    let p: cedar_policy::Policy = text.parse().unwrap();
    Reads::of(&p)
}

const NEITHER: Reads = Reads {
    path: false,
    time: false,
};
const PATH: Reads = Reads {
    path: true,
    time: false,
};
const TIME: Reads = Reads {
    path: false,
    time: true,
};

#[test]
fn every_spelling_of_path_and_time_is_seen() {
    for (text, want) in [
        (
            r#"permit (principal, action, resource) when { resource.path like "/a*" };"#,
            PATH,
        ),
        (
            r#"permit (principal, action, resource) when { resource["path"] == "/a" };"#,
            PATH,
        ),
        (
            r#"forbid (principal, action, resource) when { resource["p\u{61}th"] like "/esc/admin*" };"#,
            PATH,
        ),
        (
            r#"forbid (principal, action, resource) unless { resource["\u{70}\u{61}\u{74}\u{68}"] == "/x" };"#,
            PATH,
        ),
        (
            r#"permit (principal, action, resource) when { resource has path };"#,
            PATH,
        ),
        (
            r#"permit (principal, action, resource) when { resource has "p\u{61}th" };"#,
            PATH,
        ),
        (
            r#"permit (principal, action, resource) unless { context.time > 5 };"#,
            TIME,
        ),
        (
            r#"permit (principal, action, resource) when { context["time"] > 5 };"#,
            TIME,
        ),
        (
            r#"permit (principal, action, resource) when { context["t\u{69}me"] > 5 };"#,
            TIME,
        ),
        (
            r#"permit (principal, action, resource) when { context has time };"#,
            TIME,
        ),
        // `context` as a whole value reads every field.
        (
            r#"permit (principal, action, resource) when { [context].contains(context) };"#,
            TIME,
        ),
        (
            r#"permit (principal, action, resource) when { {c: context}.c.hour == 1 };"#,
            TIME,
        ),
        (
            r#"permit (principal, action, resource) when { {r: resource}.r.path == "/" };"#,
            PATH,
        ),
        (
            r#"permit (principal, action, resource) when { if context.hour < 3 then resource["path"] == "/a" else context["time"] > 1 };"#,
            Reads::EVERYTHING,
        ),
        // Neither: other attributes, and the words only in strings, ids and names.
        (
            r#"permit (principal, action, resource) when { context.hour < 11 && resource.name == "path" };"#,
            NEITHER,
        ),
        (
            r#"@id("time-and-path") permit (principal, action, resource) when { principal.id like "*path*time*" };"#,
            NEITHER,
        ),
        (
            r#"permit (principal, action, resource == Route::"path");"#,
            NEITHER,
        ),
    ] {
        assert_eq!(reads(text), want, "{text}");
    }
}

#[test]
fn a_set_reads_what_any_policy_reads() {
    let set: cedar_policy::PolicySet = r#"
            permit (principal, action, resource) when { resource["p\u{61}th"] == "/" };
            permit (principal, action, resource) when { context["t\u{69}me"] > 1 };"#
        .parse()
        .unwrap();
    assert_eq!(Reads::of_all(set.policies()), Reads::EVERYTHING);
    assert_eq!(Reads::of_all(std::iter::empty()), NEITHER);
}
