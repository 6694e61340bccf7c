//! The admin listener: liveness, readiness, Prometheus metrics.

use crate::support::*;
use rustls_pki_types::pem::PemObject;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let toml = base_config(dir.path(), "", "", &route("api", "/api", &up.url(), ""));
    let gw = start_in_process(dir.path(), &toml).await;
    let admin = format!("http://{}", gw.admin_addr);
    assert_eq!(
        reqwest::get(format!("{admin}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{admin}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{admin}/nope"))
            .await
            .unwrap()
            .status(),
        404
    );

    let client = reqwest::Client::new();
    for _ in 0..3 {
        client
            .get(format!("http://{}/api/x", gw.data_addr))
            .send()
            .await
            .unwrap();
    }
    client
        .get(format!("http://{}/zzz", gw.data_addr))
        .send()
        .await
        .unwrap();
    let resp = reqwest::get(format!("{admin}/metrics")).await.unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(
            "portcullis_requests_total{route=\"api\",decision=\"allow\",kind=\"none\",code=\"2xx\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "portcullis_requests_total{route=\"(unrouted)\",decision=\"deny\",kind=\"none\",code=\"4xx\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("portcullis_request_duration_seconds_count{route=\"api\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_upstream_duration_seconds_count{route=\"api\"} 3"),
        "{text}"
    );
    assert!(text.contains("# TYPE portcullis_request_duration_seconds histogram"));
    gw.stop().await;
}

/// A gateway with admin over mTLS for `spiffe://corp.example/ops/*`, a plain `api` route, and
/// the given `[listen.tls]` and `[admin.tls]` sections (either may be empty).
fn admin_mtls_config(pki: &Pki, up: &Upstream, listen_tls: &str, admin_tls: &str) -> String {
    format!(
        r#"version = 1
[listen]
addr = "127.0.0.1:0"
{listen_tls}
[admin]
addr = "127.0.0.1:0"
allow = ["spiffe://corp.example/ops/*"]
{admin_tls}
[audit]
sink = "{d}/audit.jsonl"
[trust."corp.example"]
x509_bundle = "{d}/ca.pem"
{route}"#,
        d = pki.dir.path().display(),
        route = route("api", "/api", &up.url(), "")
    )
}

/// A client trusting the test CA, presenting `{who}.pem`/`{who}.key` from the PKI dir when given;
/// it records the server's certificate (`reqwest::tls::TlsInfo`).
pub(crate) fn mtls_client(pki: &Pki, who: Option<&str>) -> reqwest::Client {
    let dir = pki.dir.path();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(pki.ca.cert_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match who {
        None => b.with_no_client_auth(),
        Some(name) => {
            let chain = rustls_pki_types::CertificateDer::pem_slice_iter(
                &std::fs::read(dir.join(format!("{name}.pem"))).unwrap(),
            )
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(
                &std::fs::read(dir.join(format!("{name}.key"))).unwrap(),
            )
            .unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .tls_info(true)
        .build()
        .unwrap()
}

/// `[admin] allow`: the admin listener speaks TLS with the gateway's certificate; probes and
/// metrics need no client certificate, the ops API and the dashboard need an allowed X.509-SVID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_over_mtls_admits_only_allowed_spiffe_ids() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let up = Upstream::start().await;
    let write = |name: &str, id: &str| {
        let svid = pki.ca.svid(id).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), &svid.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), &svid.key_pem).unwrap();
    };
    write("alice", "spiffe://corp.example/ops/alice");
    write("app", "spiffe://corp.example/ns/payments/api");
    let toml = admin_mtls_config(&pki, &up, &pki.tls_section(), "");
    let gw = start_in_process(dir, &toml).await;
    let base = format!("https://127.0.0.1:{}", gw.admin_addr.port());
    let client = |who: Option<&str>| mtls_client(&pki, who);
    let status = |c: reqwest::Client, path: &'static str| {
        let url = format!("{base}{path}");
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };

    // Probes and scrapes: no client certificate needed.
    assert_eq!(status(client(None), "/healthz").await, 200);
    assert_eq!(status(client(None), "/readyz").await, 200);
    assert_eq!(status(client(None), "/metrics").await, 200);
    // The ops API and the dashboard: only allowed SPIFFE IDs.
    for path in ["/admin/v1/inventory", "/"] {
        assert_eq!(
            status(client(None), path).await,
            403,
            "{path} without a certificate"
        );
        assert_eq!(
            status(client(Some("app")), path).await,
            403,
            "{path} as a workload"
        );
        assert_eq!(
            status(client(Some("alice")), path).await,
            200,
            "{path} as an operator"
        );
    }
    let r = client(Some("app"))
        .post(format!("{base}/admin/v1/revocations"))
        .header("content-type", "application/json")
        .body(r#"{"identity":"spiffe://corp.example/ops/alice","reason":"takeover"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:portcullis:forbidden");

    // Plain HTTP to the admin port does not get an answer.
    assert!(reqwest::get(format!("http://{}/healthz", gw.admin_addr))
        .await
        .is_err());

    // The CLI: https with the operator's certificate; without one it is refused (exit 1).
    let cli = |cert: bool| {
        let mut c = std::process::Command::new(bin());
        c.args(["inventory", "--json", "--admin", &base, "--cacert"])
            .arg(dir.join("ca.pem"));
        if cert {
            c.arg("--cert")
                .arg(dir.join("alice.pem"))
                .arg("--key")
                .arg(dir.join("alice.key"));
        }
        c.output().unwrap()
    };
    let ok = cli(true);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(v.is_object(), "{v}");
    let refused = cli(false);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("403"));
    gw.stop().await;
}

/// `[admin.tls]`: admin over mTLS with its own certificate, on a gateway whose data listener is
/// plain HTTP (no `[listen.tls]` to borrow from).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_over_mtls_with_its_own_certificate() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let up = Upstream::start().await;
    let admin_der = pki.write_server_cert("admin");
    let svid = pki.ca.svid("spiffe://corp.example/ops/alice").unwrap();
    std::fs::write(dir.join("alice.pem"), &svid.cert_pem).unwrap();
    std::fs::write(dir.join("alice.key"), &svid.key_pem).unwrap();
    let admin_tls = format!(
        "[admin.tls]\ncert = \"{d}/admin.pem\"\nkey = \"{d}/admin.key\"\n",
        d = dir.display()
    );
    let toml = admin_mtls_config(&pki, &up, "", &admin_tls);
    let gw = start_in_process(dir, &toml).await;
    let base = format!("https://127.0.0.1:{}", gw.admin_addr.port());
    let served_cert = |r: &reqwest::Response| {
        r.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate())
            .map(<[u8]>::to_vec)
    };
    let probe = mtls_client(&pki, None)
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);
    assert_eq!(served_cert(&probe), Some(admin_der.clone()));
    let ops = mtls_client(&pki, Some("alice"))
        .get(format!("{base}/admin/v1/inventory"))
        .send()
        .await
        .unwrap();
    assert_eq!(ops.status(), 200);
    assert_eq!(served_cert(&ops), Some(admin_der));
    let anonymous = mtls_client(&pki, None)
        .get(format!("{base}/admin/v1/inventory"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 403);
    // The data listener stays plain HTTP.
    let data = reqwest::get(format!("http://{}/api/x", gw.data_addr))
        .await
        .unwrap();
    assert_eq!(data.status(), 200);
    gw.stop().await;
}
