use super::*;
use crate::path_template::template_path;

fn obs(identity: &str, method: &str, path: &str) -> Observed {
    Observed {
        identity: identity.into(),
        method: method.into(),
        path: path.into(),
        count: 2,
    }
}

#[test]
fn templating_is_idempotent_and_changes_nothing_in_the_policy() {
    assert_eq!(template_path("/cics/payments"), "/cics/payments");
    assert!(matches!(
        template_path("/cics/payments"),
        std::borrow::Cow::Borrowed(_)
    ));
    let raw = [
        "/cics/payments/42/status",
        "/cics/payments/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "/cics/payments/report/2026-11-01",
        "/files/*/x",
    ];
    let templated: Vec<String> = raw.iter().map(|p| template_path(p).into_owned()).collect();
    assert_eq!(
        templated,
        [
            "/cics/payments/*/status",
            "/cics/payments/*",
            "/cics/payments/report/*",
            "/files/*/x"
        ]
    );
    for t in &templated {
        assert_eq!(template_path(t), t.as_str(), "idempotent");
    }
    let id = "spiffe://corp.example/ns/payments/sa/api";
    let a: Vec<Observed> = raw.iter().map(|p| obs(id, "GET", p)).collect();
    let b: Vec<Observed> = templated.iter().map(|p| obs(id, "GET", p)).collect();
    assert_eq!(suggest("r", &a), suggest("r", &b));
}
