//! One canonical request: every spelling of a path or host that an upstream would read as the same
//! resource gets the same route and decision as the plain spelling, or a 400. Over HTTP/1.1 (raw
//! bytes on TLS) and HTTP/2 (hyper client, `:authority` set freely), against a real upstream.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const KEY: &str = "pk_live_canonical_0123456789abcdef";
const ISSUER: &str = "https://gw.corp.example";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proto {
    H1,
    H2,
}
use Proto::{H1, H2};

struct Env {
    pki: Pki,
    up: Upstream,
    gw: portcullis::server::Running,
}

/// What came back, and whether the upstream was reached.
#[derive(Debug)]
struct Outcome {
    status: u16,
    body: String,
    upstream: bool,
}

impl Env {
    /// Routes: `/admin` (API key; `admin_match` is added to its `match`), a host route for
    /// `admin.corp.example` (API key), and the pass-through `/` (`open_match` added to its `match`). `extra`
    /// goes before the routes (more sections).
    async fn start(admin_match: &[&str], open_match: &[&str], extra: &str) -> Env {
        let pki = Pki::new();
        let dir = pki.dir.path();
        write_api_keys(dir, &[("ops", "spiffe://corp.example/ops/alice", KEY)]);
        std::fs::write(
            dir.join("admin.cedar"),
            "permit(principal, action, resource) when { resource.path like \"/admin/secret*\" };\n",
        )
        .unwrap();
        let up = Upstream::start().await;
        let u = up.url();
        let admin = admin_match.iter().fold(
            RouteToml::new("admin", "/admin", &u)
                .accept(&["keys"])
                .key(&format!(
                    "policy = {:?}",
                    dir.join("admin.cedar").display().to_string()
                ))
                .audience("legacy"),
            |r, m| r.matcher(m),
        );
        let admin_host = RouteToml::new("admin-host", "/", &u)
            .host("admin.corp.example")
            .accept(&["keys"])
            .allow(&["spiffe://corp.example/ops/*"])
            .audience("legacy");
        let open = open_match
            .iter()
            .fold(RouteToml::new("open", "/", &u), |r, m| r.matcher(m));
        let routes = format!(
            r#"
[issuer]
url = "{ISSUER}"
spiffe_id = "spiffe://corp.example/portcullis"
{extra}

{}{admin}{admin_host}{open}"#,
            api_key_credential("keys", dir, "header = \"X-API-Key\""),
        );
        let toml = base_config(dir, "", &pki.tls_section(), &routes);
        let gw = start_in_process(dir, &toml).await;
        Env { pki, up, gw }
    }

    fn tls(&self, alpn: &[u8]) -> tokio_rustls::TlsConnector {
        let mut cfg = self.pki.client_config();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }

    /// `method target` with `authority` as Host (h1) or `:authority` (h2), plus `headers`.
    async fn send(
        &self,
        proto: Proto,
        method: &str,
        authority: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Outcome {
        let before = self.up.count();
        let tcp = tokio::net::TcpStream::connect(self.gw.data_addr)
            .await
            .unwrap();
        let sni = ServerName::try_from("localhost").unwrap();
        let (status, body) = match proto {
            H1 => {
                let mut tls = self.tls(b"http/1.1").connect(sni, tcp).await.unwrap();
                let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\n");
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
                tls.write_all(head.as_bytes()).await.unwrap();
                let mut buf = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
                let text = String::from_utf8_lossy(&buf).into_owned();
                let body = text
                    .split_once("\r\n\r\n")
                    .map_or("", |(_, b)| b)
                    .to_owned();
                (status_of(&text), body)
            }
            H2 => {
                let tls = self.tls(b"h2").connect(sni, tcp).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let mut req = http::Request::builder()
                    .method(method)
                    .uri(format!("https://{authority}{target}"));
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                let resp = sender
                    .send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap())
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        Outcome {
            status,
            body,
            upstream: self.up.count() > before,
        }
    }

    async fn get(&self, proto: Proto, authority: &str, target: &str) -> Outcome {
        self.send(proto, "GET", authority, target, &[]).await
    }

    async fn get_with_key(&self, proto: Proto, authority: &str, target: &str) -> Outcome {
        self.send(proto, "GET", authority, target, &[("x-api-key", KEY)])
            .await
    }
}

fn assert_refused_400(o: &Outcome, what: &str) {
    assert_eq!(o.status, 400, "{what}: {o:?}");
    assert!(
        o.body.contains("urn:portcullis:invalid-request"),
        "{what}: {o:?}"
    );
    assert!(!o.upstream, "{what}: reached the upstream");
}

const PARAM_SPELLINGS: &[&str] = &[
    "/admin;x/secret",
    "/admin;/secret",
    "/admin;jsessionid=1/secret",
    "/admin%3bx/secret",
    "/admin%3Bx/secret",
];

/// Finding 1: `;params` used to move `/admin…` to the pass-through route. By default they are
/// refused wherever they appear (the pass-through route too).
#[tokio::test]
async fn path_parameters_are_refused_by_default() {
    let env = Env::start(&[], &[], "").await;
    for proto in [H1, H2] {
        for target in PARAM_SPELLINGS
            .iter()
            .chain(&["/open;x/y", "/open/y;v=1", "/open%3Bx"])
        {
            let o = env.get(proto, "localhost", target).await;
            assert_refused_400(&o, &format!("{proto:?} {target}"));
        }
        // The plain spellings still work: 401 without a key, 200 with it; the open route is open.
        assert_eq!(
            env.get(proto, "localhost", "/admin/secret").await.status,
            401
        );
        let o = env.get_with_key(proto, "localhost", "/admin/secret").await;
        assert!(o.status == 200 && o.upstream, "{proto:?}: {o:?}");
        assert_eq!(env.up.last().path_and_query, "/admin/secret");
        let o = env.get(proto, "localhost", "/open/y").await;
        assert!(o.status == 200 && o.upstream, "{proto:?}: {o:?}");
    }
}

/// `strip-for-match` on `/admin`: the parameters reach `/admin`'s route (its credentials and its
/// policy, evaluated on the stripped path) and are forwarded unchanged.
#[tokio::test]
async fn strip_for_match_keeps_the_route_and_policy_of_the_stripped_path() {
    let env = Env::start(&["path_parameters = \"strip-for-match\""], &[], "").await;
    for proto in [H1, H2] {
        for target in PARAM_SPELLINGS {
            let o = env.get(proto, "localhost", target).await;
            assert!(o.status == 401 && !o.upstream, "{proto:?} {target}: {o:?}");
            let o = env.get_with_key(proto, "localhost", target).await;
            assert!(o.status == 200 && o.upstream, "{proto:?} {target}: {o:?}");
            let seen = env.up.last().path_and_query;
            assert_eq!(seen.to_ascii_lowercase(), target.to_ascii_lowercase());
        }
        // The policy reads the stripped path: `/admin;x/other` is /admin/other, not allowed.
        let o = env.get_with_key(proto, "localhost", "/admin;x/other").await;
        assert!(o.status == 403 && !o.upstream, "{proto:?}: {o:?}");
        // The pass-through route still refuses its own parameters.
        assert_refused_400(&env.get(proto, "localhost", "/open;x").await, "open");
    }
    let audit = audit_lines(env.pki.dir.path(), 24).await;
    assert!(
        audit
            .iter()
            .any(|l| l["path"] == "/admin;jsessionid=1/secret" && l["route"] == "admin"),
        "the audit line records the canonical path as forwarded"
    );
    assert!(audit.iter().all(|l| l["path"] != "/admin%3bx/secret"));
}

/// A pass-through route that strips parameters must not catch what belongs to `/admin`
/// (which refuses them): routing is decided on the stripped form for every route.
#[tokio::test]
async fn a_stripping_catch_all_does_not_take_a_refusing_route_s_paths() {
    let env = Env::start(&[], &["path_parameters = \"strip-for-match\""], "").await;
    for proto in [H1, H2] {
        for target in PARAM_SPELLINGS {
            assert_refused_400(&env.get(proto, "localhost", target).await, target);
        }
        let o = env.get(proto, "localhost", "/open;jsessionid=1/y").await;
        assert!(o.status == 200 && o.upstream, "{proto:?}: {o:?}");
        assert_eq!(env.up.last().path_and_query, "/open;jsessionid=1/y");
    }
}

/// Finding 1 (Host): a trailing dot, upper case or a port used to escape a host route.
#[tokio::test]
async fn host_spellings_reach_the_host_route() {
    let env = Env::start(&[], &[], "").await;
    for proto in [H1, H2] {
        for host in [
            "admin.corp.example",
            "admin.corp.example.",
            "ADMIN.Corp.Example.",
            "admin.corp.example.:443",
            "admin.corp.example:8443",
        ] {
            let o = env.get(proto, host, "/x").await;
            assert!(o.status == 401 && !o.upstream, "{proto:?} {host}: {o:?}");
            let o = env.get_with_key(proto, host, "/x").await;
            assert!(o.status == 200 && o.upstream, "{proto:?} {host}: {o:?}");
            // The upstream is told the canonical host.
            let seen = env.up.last();
            assert_eq!(seen.headers["x-forwarded-host"], "admin.corp.example");
        }
        for host in ["admin.corp.example..", "admin..corp.example"] {
            assert_refused_400(&env.get(proto, host, "/x").await, host);
        }
    }
    // Percent-encoding in Host (h1: HTTP/2 clients refuse to send it).
    assert_refused_400(&env.get(H1, "%61dmin.corp.example", "/x").await, "pct");
    // X-Forwarded-Host from the caller is never read for routing.
    let o = env
        .send(
            H1,
            "GET",
            "other.example",
            "/x",
            &[("x-forwarded-host", "admin.corp.example")],
        )
        .await;
    assert!(o.status == 200 && o.upstream, "{o:?}");
    assert_eq!(env.up.last().headers["x-forwarded-host"], "other.example");
}

/// `[routes.match] case_insensitive = true`: any case of the prefix reaches the route (IIS).
/// Without it, `/ADMIN` is a different path (the documented risk on case-insensitive upstreams).
#[tokio::test]
async fn case_insensitive_routes_match_every_case() {
    let env = Env::start(&["case_insensitive = true"], &[], "").await;
    for proto in [H1, H2] {
        for target in [
            "/ADMIN/secret",
            "/Admin/Secret",
            "/%41dmin/secret",
            "/admin/SECRET",
        ] {
            let o = env.get(proto, "localhost", target).await;
            assert!(o.status == 401 && !o.upstream, "{proto:?} {target}: {o:?}");
            // One policy decision for every case: the policy sees the path in lower case.
            let o = env.get_with_key(proto, "localhost", target).await;
            assert!(o.status == 200 && o.upstream, "{proto:?} {target}: {o:?}");
        }
    }
    let env = Env::start(&[], &[], "").await;
    let o = env.get(H1, "localhost", "/ADMIN/secret").await;
    assert!(
        o.status == 200 && o.upstream,
        "case-sensitive by default: {o:?}"
    );
}

/// Finding 2: local endpoints are matched on the canonical path, not the raw one.
#[tokio::test]
async fn local_endpoints_match_the_canonical_path() {
    let env = Env::start(&[], &[], "[token_exchange]\naccept = [\"keys\"]\n").await;
    for proto in [H1, H2] {
        for target in ["/oauth2/%74oken", "/oauth2/token", "/%6Fauth2/token"] {
            let o = env.send(proto, "POST", ISSUER_HOST, target, &[]).await;
            assert!(!o.upstream, "{proto:?} {target} was forwarded: {o:?}");
            // The gateway's own endpoint answered (it wants an RFC 8693 form).
            assert_eq!(o.status, 415, "{proto:?} {target}: {o:?}");
            assert!(o.body.contains("x-www-form-urlencoded"), "{o:?}");
        }
        for target in [
            "/.well-known/%6Awks.json",
            "/.well-known/jwks%2Ejson",
            "/%2Ewell-known/jwks.json",
        ] {
            let o = env.get(proto, ISSUER_HOST, target).await;
            assert!(o.status == 200 && !o.upstream, "{proto:?} {target}: {o:?}");
            assert!(o.body.contains("\"keys\""), "{proto:?} {target}: {o:?}");
        }
        let o = env
            .get(proto, ISSUER_HOST, "/.well-known/%6Fpenid-configuration")
            .await;
        assert!(o.status == 200 && !o.upstream, "{proto:?}: {o:?}");
        // Parameters on a gateway endpoint are refused (a parameter-dropping upstream would
        // read the same path).
        for target in ["/oauth2/token;x", "/.well-known/jwks.json;x"] {
            let method = if target.starts_with("/oauth2") {
                "POST"
            } else {
                "GET"
            };
            let o = env.send(proto, method, ISSUER_HOST, target, &[]).await;
            assert_refused_400(&o, target);
        }
    }
}

const ISSUER_HOST: &str = "gw.corp.example";

/// Finding 3: the well-known documents answer only on the issuer's hosts; elsewhere the
/// upstream's own documents are routed. Discovery advertises a token endpoint only with
/// `[token_exchange]`.
#[tokio::test]
async fn well_known_only_on_issuer_hosts_and_discovery_matches_the_config() {
    let env = Env::start(&[], &[], "").await;
    for proto in [H1, H2] {
        for host in ["gw.corp.example", "GW.corp.example.", "gw.corp.example:443"] {
            let o = env.get(proto, host, "/.well-known/jwks.json").await;
            assert!(o.status == 200 && !o.upstream, "{proto:?} {host}: {o:?}");
        }
        for host in ["legacy.corp.example", "localhost", "127.0.0.1"] {
            let o = env.get(proto, host, "/.well-known/jwks.json").await;
            assert!(o.status == 200 && o.upstream, "{proto:?} {host}: {o:?}");
            assert_eq!(env.up.last().path_and_query, "/.well-known/jwks.json");
            let o = env
                .get(proto, host, "/.well-known/openid-configuration")
                .await;
            assert!(o.status == 200 && o.upstream, "{proto:?} {host}: {o:?}");
        }
        // On the admin host, the host route (and its credentials) decides.
        let o = env
            .get(proto, "admin.corp.example", "/.well-known/jwks.json")
            .await;
        assert!(o.status == 401 && !o.upstream, "{proto:?}: {o:?}");
    }
    let o = env
        .get(H1, ISSUER_HOST, "/.well-known/openid-configuration")
        .await;
    let disc: serde_json::Value = serde_json::from_str(&o.body).unwrap();
    assert_eq!(disc["issuer"], ISSUER);
    assert_eq!(disc["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
    for absent in [
        "token_endpoint",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
    ] {
        assert!(
            disc.get(absent).is_none(),
            "{absent} without [token_exchange]: {disc}"
        );
    }

    // With [token_exchange] it is advertised; `well_known_hosts` adds hosts.
    let env = Env::start(
        &[],
        &[],
        "well_known_hosts = [\"localhost\"]\n[token_exchange]\naccept = [\"keys\"]\n",
    )
    .await;
    let o = env
        .get(H2, "localhost", "/.well-known/openid-configuration")
        .await;
    assert!(o.status == 200 && !o.upstream, "{o:?}");
    let disc: serde_json::Value = serde_json::from_str(&o.body).unwrap();
    assert_eq!(disc["token_endpoint"], format!("{ISSUER}/oauth2/token"));
    let o = env
        .get(H1, "legacy.corp.example", "/.well-known/jwks.json")
        .await;
    assert!(o.upstream, "{o:?}");
}

/// Finding 4 (end to end): equivalent spellings get the same outcome over h1 and h2.
#[tokio::test]
async fn equivalent_spellings_agree_over_h1_and_h2() {
    let env = Env::start(&["path_parameters = \"strip-for-match\""], &[], "").await;
    let groups: &[&[&str]] = &[
        &[
            "/admin/secret",
            "/%61dmin/secret",
            "/admin/%73ecret",
            "/admin;v=1/secret",
            "/admin%3Bv/secret",
        ],
        &["/admin/other", "/adm%69n/other", "/admin;a/other;b"],
        &["/open/x", "/%6Fpen/x", "/open/%78"],
    ];
    for group in groups {
        let mut outcomes = Vec::new();
        for target in *group {
            for proto in [H1, H2] {
                let o = env.get_with_key(proto, "localhost", target).await;
                outcomes.push((proto, *target, o.status, o.upstream));
            }
        }
        let (_, _, status, upstream) = outcomes[0];
        for o in &outcomes {
            assert_eq!((o.2, o.3), (status, upstream), "{outcomes:?}");
        }
    }
}
