use std::path::Path;

use crate::config::creds::tests::problems;
use crate::proxy::settings::{ClientCert, TokenSource};
use crate::transport::settings::ServerCert;

const SPIFFE: &str = "[spiffe]\nworkload_api = \"unix:///run/spire/agent.sock\"\n";

fn upstream_route(keys: &str) -> String {
    format!("[[routes]]\nname = \"r\"\nmatch = {{ path_prefix = \"/r/\" }}\n[routes.upstream]\nurl = \"https://10.0.0.7:9443\"\n{keys}\n")
}

fn load(extra: &str) -> crate::config::Config {
    let text = format!(
        "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{extra}"
    );
    crate::config::from_toml_str(&text, Path::new("/nonexistent/p.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn workload_api_keys_are_read() {
    let cfg = load(&format!(
        "{SPIFFE}svid_hint = \"internal\"\nstartup_timeout = \"5s\"\n[listen.tls]\nsource = \"workload-api\"\n{}",
        upstream_route("client_cert = \"workload-api\"\nserver_spiffe_id = \"spiffe://corp.example/mainframe/cics\"\naudience = \"cics\"\ntoken_source = \"workload-api\"")
    ));
    let s = cfg.spiffe.as_ref().unwrap();
    assert_eq!(s.endpoint, "unix:///run/spire/agent.sock");
    assert_eq!(s.svid_hint.as_deref(), Some("internal"));
    assert_eq!(s.startup_timeout, std::time::Duration::from_secs(5));
    assert!(matches!(cfg.listen.tls, Some(ServerCert::WorkloadApi)));
    let up = &cfg.routes[0].upstream;
    assert!(matches!(up.client_cert, Some(ClientCert::WorkloadApi)));
    assert_eq!(
        up.server_spiffe_id.as_ref().unwrap().to_string(),
        "spiffe://corp.example/mainframe/cics"
    );
    assert_eq!(up.token_source, TokenSource::WorkloadApi);
}

#[test]
fn no_spiffe_section_and_nothing_using_it_means_no_workload_api() {
    let cfg = load(&upstream_route(""));
    assert!(cfg.spiffe.is_none());
}

#[test]
fn using_the_workload_api_needs_an_endpoint() {
    // (SPIFFE_ENDPOINT_SOCKET is not set in the test environment.)
    if std::env::var_os("SPIFFE_ENDPOINT_SOCKET").is_some() {
        return;
    }
    let p = problems("[listen.tls]\nsource = \"workload-api\"\n").join("\n");
    assert!(
        p.contains("listen.tls.source: needs the Workload API: set [spiffe] workload_api"),
        "{p}"
    );
    let p = problems(&upstream_route("client_cert = \"workload-api\"")).join("\n");
    assert!(
        p.contains("routes[0].upstream.client_cert: needs the Workload API"),
        "{p}"
    );
}

#[test]
fn hostile_spellings_and_combinations_are_refused() {
    let cases = [
        // Another spelling of the source: refused, not silently "files".
        (
            "[listen.tls]\nsource = \"Workload-API\"\n".to_string(),
            "listen.tls.source: \"Workload-API\": expected \"files\" or \"workload-api\"",
        ),
        (
            "[listen.tls]\nsource = \"workload-api\"\ncert = \"a.pem\"\n".to_string(),
            "listen.tls.cert: not used with source = \"workload-api\"",
        ),
        (
            "[listen.tls]\ncert = \"a.pem\"\n".to_string(),
            "listen.tls.key: required",
        ),
        (
            "[spiffe]\nworkload_api = \"/run/spire/agent.sock\"\n".to_string(),
            "spiffe.workload_api: \"/run/spire/agent.sock\": expected unix:///path",
        ),
        (
            format!("{SPIFFE}svid_hint = \"\"\n"),
            "spiffe.svid_hint: must not be empty",
        ),
        (
            format!("{SPIFFE}startup_timeout = \"0s\"\n"),
            "spiffe.startup_timeout: must be greater than zero",
        ),
        (
            format!("{SPIFFE}{}", upstream_route("server_spiffe_id = \"spiffe://corp.example\"")),
            "routes[0].upstream.server_spiffe_id: must name a workload",
        ),
        (
            format!("{SPIFFE}{}", upstream_route("server_spiffe_id = \"https://corp.example/cics\"")),
            "routes[0].upstream.server_spiffe_id: \"https://corp.example/cics\"",
        ),
        (
            format!(
                "{SPIFFE}{}",
                upstream_route("server_spiffe_id = \"spiffe://corp.example/cics\"\nca = \"/etc/hostname\"")
            ),
            "routes[0].upstream.server_spiffe_id: set either server_spiffe_id",
        ),
        (
            format!("{SPIFFE}{}", upstream_route("client_cert = \"workload-api\"\nclient_key = \"/etc/hostname\"")),
            "routes[0].upstream.client_key: not used with client_cert = \"workload-api\"",
        ),
        (
            upstream_route("client_cert = \"/etc/hostname\""),
            "routes[0].upstream.client_key: required with a client_cert file",
        ),
        (
            upstream_route("client_key = \"/etc/hostname\""),
            "routes[0].upstream.client_cert: required with client_key",
        ),
        (
            format!("{SPIFFE}{}", upstream_route("token_source = \"agent\"\naudience = \"a\"")),
            "routes[0].upstream.token_source: \"agent\": expected \"workload-api\"",
        ),
        (
            format!(
                "{SPIFFE}[[routes]]\nname = \"r\"\nmatch = {{ path_prefix = \"/r/\" }}\n[routes.upstream]\nurl = \"http://10.0.0.7\"\nclient_cert = \"workload-api\"\nserver_spiffe_id = \"spiffe://corp.example/x\"\n"
            ),
            "routes[0].upstream.client_cert: needs an https upstream URL",
        ),
    ];
    for (config, want) in cases {
        let p = problems(&config).join("\n");
        assert!(
            p.contains(want),
            "config:\n{config}\nwant {want:?} in:\n{p}"
        );
    }
}

#[test]
fn with_spiffe_a_trust_domain_only_the_agent_serves_is_a_warning_not_an_error() {
    let creds = "[credentials.m]\nkind = \"mtls\"\ntrust_domains = [\"partner.example\"]\n";
    // Without [spiffe]: an error (no bundle could ever verify these callers).
    let p = problems(creds).join("\n");
    assert!(
        p.contains("credentials.m.trust_domains[0]: no [trust"),
        "{p}"
    );
    // With it: `check` warns, and the credential is kept.
    let cfg = load(&format!("{SPIFFE}{creds}"));
    assert_eq!(cfg.credentials.len(), 1);
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("credentials.m.trust_domains[0]") && w.contains("Workload API")),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn token_source_workload_api_needs_no_issuer_but_an_audience() {
    let cfg = load(&format!(
        "{SPIFFE}[listen.tls]\nsource = \"workload-api\"\n[credentials.m]\nkind = \"mtls\"\ntrust_domains = [\"corp.example\"]\n[[routes]]\nname = \"r\"\nmatch = {{ path_prefix = \"/r/\" }}\naccept = [\"m\"]\nallow = [\"*\"]\n[routes.upstream]\nurl = \"http://10.0.0.7\"\naudience = \"cics\"\ntoken_source = \"workload-api\"\n"
    ));
    assert!(cfg.issuer.is_none());
    let p = problems(&format!(
        "{SPIFFE}[listen.tls]\nsource = \"workload-api\"\n[credentials.m]\nkind = \"mtls\"\ntrust_domains = [\"corp.example\"]\n[[routes]]\nname = \"r\"\nmatch = {{ path_prefix = \"/r/\" }}\naccept = [\"m\"]\nallow = [\"*\"]\n[routes.upstream]\nurl = \"http://10.0.0.7\"\ntoken_source = \"workload-api\"\n"
    ))
    .join("\n");
    assert!(p.contains("routes[0].upstream.audience: required"), "{p}");
}
