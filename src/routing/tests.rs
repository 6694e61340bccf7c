use super::*;

#[test]
fn prefixes_respect_segments() {
    assert!(prefix_matches("/api", "/api"));
    assert!(prefix_matches("/api", "/api/x"));
    assert!(!prefix_matches("/api", "/apix"));
    assert!(prefix_matches("/api/", "/api/x"));
    assert!(!prefix_matches("/api/", "/api"));
    assert!(prefix_matches("/", "/anything"));
}

#[test]
fn wildcard_hosts_match_one_label() {
    let w = HostMatch::Wildcard(".corp.example".into());
    assert!(w.matches("api.corp.example"));
    assert!(!w.matches("corp.example"));
    assert!(!w.matches("a.b.corp.example"));
    assert!(!w.matches("evilcorp.example"));
}
