//! SPIFFE Workload API end to end (`docs/spiffe.md`): a real gRPC Workload API server on a Unix
//! socket serves rcgen SVIDs and bundles and pushes updates mid-test; the gateway serves the SVID,
//! trusts the bundles, survives the agent going away, presents the SVID to an upstream that
//! demands a client certificate, checks the upstream's SPIFFE ID, and forwards JWT-SVIDs.

use std::time::Duration;

use futures_util::FutureExt as _;

use crate::support::*;
use crate::workload_api_support::*;

const GW_ID: &str = "spiffe://corp.example/portcullis";

async fn admin_get(gw: &portcullis::server::Running, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{}{path}", gw.admin_addr))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in metrics:\n{text}"))
}

/// The mTLS route: callers of corp.example and partner.example with an SVID.
fn mtls_route(upstream: &str) -> String {
    format!(
        "[credentials.workload-mtls]\nkind = \"mtls\"\ntrust_domains = [\"corp.example\", \"partner.example\"]\n\
         [[routes]]\nname = \"api\"\nmatch = {{ path_prefix = \"/api\" }}\naccept = [\"workload-mtls\"]\n\
         allow = [\"spiffe://corp.example/*\", \"spiffe://partner.example/*\"]\n\
         [routes.upstream]\nurl = \"{upstream}\"\ntoken_header = \"none\"\n"
    )
}

#[tokio::test]
async fn listener_serves_the_agents_svid_and_a_rotation_within_a_second_without_dropping_connections(
) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let first = ca.svid(GW_ID);
    let mut agent = Agent::start(dir.path(), &AgentState::one(GW_ID, &first, &[ca.der()]));
    let up = Upstream::start().await;
    let toml = gateway_config(dir.path(), &agent, &route("api", "/api", &up.url(), ""));
    let gw = start_in_process(dir.path(), &toml).await;

    // The listener presents the agent's SVID.
    let (status, leaf) = get_fresh(gw.data_addr, "/api/a", None).await;
    assert_eq!(status, Some(200));
    assert_eq!(leaf.unwrap(), first.leaf());

    // A keep-alive connection opened before the rotation...
    let rec = RecordingVerifier::new();
    let old = client(None, &rec);
    let url = format!("https://127.0.0.1:{}/api/keep", gw.data_addr.port());
    assert_eq!(old.get(&url).send().await.unwrap().status(), 200);

    // ...then the agent rotates the SVID: a new handshake sees it within a second.
    let second = ca.svid(GW_ID);
    agent.push(&AgentState::one(GW_ID, &second, &[ca.der()]));
    let want = second.leaf();
    let took = within(Duration::from_secs(1), || {
        let want = want.clone();
        async move { get_fresh(gw.data_addr, "/api/b", None).await.1 == Some(want) }
    })
    .await;
    assert!(took.is_some(), "the rotated SVID was not served within 1 s");

    // The old connection was not dropped: it still works, on the same handshake.
    assert_eq!(old.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(
        rec.seen.lock().unwrap().len(),
        1,
        "the old connection was re-established"
    );

    let (code, m) = admin_get(&gw, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(metric(&m, "portcullis_workload_api_up"), 1.0);
    let left = metric(&m, "portcullis_svid_expiry_seconds");
    assert!(
        left > 3000.0 && left <= 3600.0,
        "svid_expiry_seconds = {left}"
    );
    let (code, body) = admin_get(&gw, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("connected"), "{body}");
    // Every call the gateway made carried the metadata header.
    assert!(agent.calls("FetchX509SVID") >= 1);
    assert!(!agent
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("REFUSED")));
    gw.stop().await;
}

#[tokio::test]
async fn svid_hint_picks_the_named_svid_and_an_unknown_hint_never_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let external = ca.svid("spiffe://corp.example/portcullis-external");
    let internal = ca.svid(GW_ID);
    let mut state = AgentState::one(
        "spiffe://corp.example/portcullis-external",
        &external,
        &[ca.der()],
    );
    state.svids[0].3 = "external".into();
    state.svids.push((
        GW_ID.into(),
        internal.clone(),
        vec![ca.der()],
        "internal".into(),
    ));
    let agent = Agent::start(dir.path(), &state);
    let up = Upstream::start().await;
    let routes = route("api", "/api", &up.url(), "");
    let toml = gateway_config(dir.path(), &agent, &routes).replace(
        "startup_timeout = \"20s\"",
        "svid_hint = \"internal\"\nstartup_timeout = \"20s\"",
    );
    let gw = start_in_process(dir.path(), &toml).await;
    let (status, leaf) = get_fresh(gw.data_addr, "/api/a", None).await;
    assert_eq!(status, Some(200));
    assert_eq!(
        leaf.unwrap(),
        internal.leaf(),
        "the SVID hinted \"internal\" is served"
    );
    gw.stop().await;

    // Hostile twin: a hint no SVID carries does not fall back to the first one; start fails.
    let toml = gateway_config(dir.path(), &agent, &routes).replace(
        "startup_timeout = \"20s\"",
        "svid_hint = \"Internal\"\nstartup_timeout = \"1s\"",
    );
    std::fs::write(dir.path().join("p.toml"), &toml).unwrap();
    let cfg = portcullis::config::load(&dir.path().join("p.toml")).unwrap();
    let err = portcullis::server::start(cfg, Default::default())
        .await
        .expect_err("an unknown svid_hint must not start");
    assert!(format!("{err:#}").contains("Workload API"), "{err:#}");
}

#[tokio::test]
async fn a_ca_added_to_the_bundle_accepts_its_caller_and_a_removed_ca_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let new_ca = Ca::new("corp.example");
    let svid = ca.svid(GW_ID);
    let mut agent = Agent::start(dir.path(), &AgentState::one(GW_ID, &svid, &[ca.der()]));
    let up = Upstream::start().await;
    let gw = start_in_process(
        dir.path(),
        &gateway_config(dir.path(), &agent, &mtls_route(&up.url())),
    )
    .await;
    let old_caller = ca.svid("spiffe://corp.example/billing");
    let new_caller = new_ca.svid("spiffe://corp.example/billing");

    assert_eq!(
        get_fresh(gw.data_addr, "/api/x", Some(&old_caller)).await.0,
        Some(200)
    );
    // Not yet trusted: the handshake fails.
    assert_eq!(
        get_fresh(gw.data_addr, "/api/x", Some(&new_caller)).await.0,
        None
    );
    // Without a certificate the route says 401 (the route needs mtls).
    assert_eq!(get_fresh(gw.data_addr, "/api/x", None).await.0, Some(401));

    // The agent adds the new CA: its caller is accepted within a second.
    agent.push(&AgentState::one(GW_ID, &svid, &[ca.der(), new_ca.der()]));
    let took = within(Duration::from_secs(1), || async {
        get_fresh(gw.data_addr, "/api/x", Some(&new_caller)).await.0 == Some(200)
    })
    .await;
    assert!(took.is_some(), "the added CA was not trusted within 1 s");

    // A keep-alive connection of the old CA's caller, opened while the CA is trusted...
    let rec = RecordingVerifier::new();
    let kept = client(Some(&old_caller), &rec);
    let url = format!("https://127.0.0.1:{}/api/kept", gw.data_addr.port());
    assert_eq!(kept.get(&url).send().await.unwrap().status(), 200);

    // The agent removes the old CA: its caller is refused within a second.
    agent.push(&AgentState::one(GW_ID, &svid, &[new_ca.der()]));
    let took = within(Duration::from_secs(1), || async {
        get_fresh(gw.data_addr, "/api/x", Some(&old_caller))
            .await
            .0
            .is_none()
    })
    .await;
    assert!(took.is_some(), "the removed CA was still trusted after 1 s");
    // ...and on the connection it already had, its next request is refused too (the mtls
    // credential re-checks the chain against the current bundle).
    assert_eq!(kept.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(rec.seen.lock().unwrap().len(), 1, "not the same connection");
    assert_eq!(
        get_fresh(gw.data_addr, "/api/x", Some(&new_caller)).await.0,
        Some(200)
    );
    let hits = up.count();
    assert!(hits >= 3, "upstream saw {hits}");
    gw.stop().await;
}

#[tokio::test]
async fn a_federated_trust_domains_caller_is_accepted_only_under_its_own_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let corp = Ca::new("corp.example");
    let partner = Ca::new("partner.example");
    let svid = corp.svid(GW_ID);
    let mut state = AgentState::one(GW_ID, &svid, &[corp.der()]);
    state
        .federated
        .push(("spiffe://partner.example".into(), vec![partner.der()]));
    let mut agent = Agent::start(dir.path(), &state);
    let up = Upstream::start().await;
    let gw = start_in_process(
        dir.path(),
        &gateway_config(dir.path(), &agent, &mtls_route(&up.url())),
    )
    .await;
    let caller = partner.svid("spiffe://partner.example/payments");
    assert_eq!(
        get_fresh(gw.data_addr, "/api/fed", Some(&caller)).await.0,
        Some(200)
    );
    let audit = audit_lines(dir.path(), 1).await;
    assert_eq!(
        audit.last().unwrap()["identity"],
        "spiffe://partner.example/payments"
    );

    // Hostile twins: the partner CA cannot vouch for corp.example IDs, nor the corp CA for the
    // partner's.
    let forged = partner.svid("spiffe://corp.example/billing");
    assert_eq!(
        get_fresh(gw.data_addr, "/api/fed", Some(&forged)).await.0,
        None
    );
    let forged = corp.svid("spiffe://partner.example/payments");
    assert_eq!(
        get_fresh(gw.data_addr, "/api/fed", Some(&forged)).await.0,
        None
    );

    // Federation ended: the partner's caller is refused.
    agent.push(&AgentState::one(GW_ID, &svid, &[corp.der()]));
    let took = within(Duration::from_secs(1), || async {
        get_fresh(gw.data_addr, "/api/fed", Some(&caller))
            .await
            .0
            .is_none()
    })
    .await;
    assert!(took.is_some(), "the federated bundle outlived its removal");
    gw.stop().await;
}

#[tokio::test]
async fn with_the_agent_stopped_traffic_continues_readyz_reports_it_and_updates_resume() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let first = ca.svid(GW_ID);
    let mut agent = Agent::start(dir.path(), &AgentState::one(GW_ID, &first, &[ca.der()]));
    let up = Upstream::start().await;
    let gw = start_in_process(
        dir.path(),
        &gateway_config(dir.path(), &agent, &mtls_route(&up.url())),
    )
    .await;
    let caller = ca.svid("spiffe://corp.example/billing");
    assert_eq!(
        get_fresh(gw.data_addr, "/api/1", Some(&caller)).await.0,
        Some(200)
    );

    agent.stop();
    let down = within(Duration::from_secs(5), || async {
        let (_, m) = admin_get(&gw, "/metrics").await;
        metric(&m, "portcullis_workload_api_up") == 0.0
    })
    .await;
    assert!(
        down.is_some(),
        "workload_api_up stayed 1 with the agent gone"
    );
    // Traffic continues: new handshakes get the last SVID, callers are checked with the last
    // bundle.
    let (status, leaf) = get_fresh(gw.data_addr, "/api/2", Some(&caller)).await;
    assert_eq!(status, Some(200));
    assert_eq!(leaf.unwrap(), first.leaf());
    let (code, body) = admin_get(&gw, "/readyz").await;
    assert_eq!(code, 200, "the SVID is still valid: {body}");
    assert!(body.contains("unreachable"), "{body}");
    let (_, m) = admin_get(&gw, "/metrics").await;
    assert!(metric(&m, "portcullis_svid_expiry_seconds") > 0.0);

    // The agent comes back with a rotated SVID: the gateway reconnects (backoff at most 5 s).
    let second = ca.svid(GW_ID);
    agent.restart();
    agent.push(&AgentState::one(GW_ID, &second, &[ca.der()]));
    let want = second.leaf();
    let back = within(Duration::from_secs(10), || {
        let want = want.clone();
        async move { get_fresh(gw.data_addr, "/api/3", None).await.1 == Some(want) }
    })
    .await;
    assert!(
        back.is_some(),
        "updates did not resume after the agent returned"
    );
    let up_again = within(Duration::from_secs(5), || async {
        let (_, m) = admin_get(&gw, "/metrics").await;
        metric(&m, "portcullis_workload_api_up") == 1.0
    })
    .await;
    assert!(up_again.is_some());
    let (code, body) = admin_get(&gw, "/readyz").await;
    assert_eq!(code, 200);
    assert!(body.contains("connected"), "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn an_unreachable_agent_at_start_fails_after_startup_timeout_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[listen.tls]\nsource = \"workload-api\"\n[admin]\naddr = \"127.0.0.1:0\"\n[spiffe]\nworkload_api = \"unix://{}/nobody.sock\"\nstartup_timeout = \"1s\"\n",
        dir.path().display()
    );
    std::fs::write(dir.path().join("p.toml"), &toml).unwrap();
    let cfg = portcullis::config::load(&dir.path().join("p.toml")).unwrap();
    let started = std::time::Instant::now();
    let err = portcullis::server::start(cfg, Default::default())
        .await
        .expect_err("no agent: the gateway must not start");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let msg = format!("{err:#}");
    assert!(
        msg.contains("Workload API") && msg.contains("nobody.sock"),
        "{msg}"
    );
}

#[tokio::test]
async fn the_test_agent_refuses_calls_without_the_workload_metadata() {
    // The Workload API server of these tests behaves as SPIRE does: a call without the
    // `workload.spiffe.io: true` metadata is refused, so the other tests prove the gateway sends it.
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let svid = ca.svid(GW_ID);
    let signer = JwtSigner::new("k1");
    let agent = Agent::start(
        dir.path(),
        &AgentState::one(GW_ID, &svid, &[ca.der()]).with_jwt("corp.example", &signer),
    );
    let script = format!(
        r#"
import sys
sys.argv = ["x"]
sys.path.insert(0, "{FIXTURES}")
import grpc, workload_api_server as w
stub = w.pb_grpc.SpiffeWorkloadAPIStub(grpc.insecure_channel("unix:{sock}"))
req = w.pb.JWTSVIDRequest(audience=["cics"])
for md in ([], [("workload.spiffe.io", "false")]):
    try:
        stub.FetchJWTSVID(req, metadata=md)
        print("ACCEPTED")
    except grpc.RpcError as e:
        print(e.code().name)
print(len(stub.FetchJWTSVID(req, metadata=[("workload.spiffe.io", "true")]).svids))
"#,
        sock = agent.socket.display()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["INVALID_ARGUMENT", "INVALID_ARGUMENT", "1"],
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A route to a TLS upstream with the given identity keys.
fn mainframe_route(name: &str, addr: std::net::SocketAddr, keys: &str) -> String {
    format!(
        "\n[[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"/{name}\" }}\n\
         [routes.upstream]\nurl = \"https://127.0.0.1:{}\"\ntimeout = \"5s\"\n{keys}\n",
        addr.port()
    )
}

#[tokio::test]
async fn the_upstream_sees_the_gateways_svid_and_a_rotation_opens_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let first = ca.svid(GW_ID);
    let mut agent = Agent::start(dir.path(), &AgentState::one(GW_ID, &first, &[ca.der()]));
    let cics = ca.svid("spiffe://corp.example/mainframe/cics");
    let (addr, seen) = tls_upstream(&cics, &ca).await;
    let keys = "client_cert = \"workload-api\"\nserver_spiffe_id = \"spiffe://corp.example/mainframe/cics\"";
    let gw = start_in_process(
        dir.path(),
        &gateway_config(dir.path(), &agent, &mainframe_route("cics", addr, keys)),
    )
    .await;
    for i in 0..3 {
        assert_eq!(
            get_fresh(gw.data_addr, &format!("/cics/{i}"), None).await.0,
            Some(200)
        );
    }
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.requests.len(), 3);
        assert_eq!(s.client_ids.first().map(String::as_str), Some(GW_ID));
        assert_eq!(s.client_leaves[0], first.leaf());
        assert_eq!(s.client_leaves.len(), 1, "pooled connections are reused");
    }

    // Rotation: the next request goes over a new connection with the new SVID.
    let second = ca.svid(GW_ID);
    agent.push(&AgentState::one(GW_ID, &second, &[ca.der()]));
    let want = second.leaf();
    let rotated = within(Duration::from_secs(2), || {
        let want = want.clone();
        let seen = seen.clone();
        async move {
            assert_eq!(get_fresh(gw.data_addr, "/cics/r", None).await.0, Some(200));
            seen.lock().unwrap().client_leaves.last() == Some(&want)
        }
    })
    .await;
    assert!(rotated.is_some(), "the upstream never saw the rotated SVID");
    let n = seen.lock().unwrap().client_leaves.len();
    assert_eq!(
        get_fresh(gw.data_addr, "/cics/again", None).await.0,
        Some(200)
    );
    assert_eq!(
        seen.lock().unwrap().client_leaves.len(),
        n,
        "after the rotation, the new connection is reused"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_upstream_with_the_wrong_spiffe_id_gets_a_502_and_none_of_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let other_ca = Ca::new("corp.example");
    let svid = ca.svid(GW_ID);
    let agent = Agent::start(dir.path(), &AgentState::one(GW_ID, &svid, &[ca.der()]));
    // An impostor: a valid corp.example SVID, but for another workload.
    let impostor = ca.svid("spiffe://corp.example/mainframe/test-lpar");
    let (bad_addr, bad_seen) = tls_upstream(&impostor, &ca).await;
    // Hostile twin: the right ID, but from a CA outside the trust domain's bundle.
    let forged = other_ca.svid("spiffe://corp.example/mainframe/cics");
    let (forged_addr, forged_seen) = tls_upstream(&forged, &ca).await;
    let keys = "client_cert = \"workload-api\"\nserver_spiffe_id = \"spiffe://corp.example/mainframe/cics\"";
    let routes = format!(
        "{}{}",
        mainframe_route("wrongid", bad_addr, keys),
        mainframe_route("forged", forged_addr, keys)
    );
    let gw = start_in_process(dir.path(), &gateway_config(dir.path(), &agent, &routes)).await;

    let rec = RecordingVerifier::new();
    let c = client(None, &rec);
    for (n, (path, reason)) in [
        ("/wrongid/pay?amount=1", "upstream-spiffe-id-mismatch"),
        ("/forged/pay?amount=1", "upstream-untrusted"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = c
            .post(format!("https://127.0.0.1:{}{path}", gw.data_addr.port()))
            .body("secret payload")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502);
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["type"]
                .as_str()
                .unwrap()
                .ends_with("upstream-unavailable"),
            "{body}"
        );
        let lines = audit_lines(dir.path(), n + 1).await;
        let line = lines
            .iter()
            .rev()
            .find(|l| {
                l["path"]
                    .as_str()
                    .unwrap()
                    .starts_with(path.split('?').next().unwrap())
            })
            .unwrap();
        assert_eq!(line["reason"], reason, "{line}");
        assert_eq!(line["status"], 502);
    }
    for seen in [bad_seen, forged_seen] {
        let s = seen.lock().unwrap();
        assert!(s.connections >= 1, "the gateway never tried");
        assert!(
            s.requests.is_empty(),
            "the request reached an unverified upstream"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_jwt_svid_from_the_agent_reaches_the_upstream_and_verifies_against_the_jwt_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let svid = ca.svid(GW_ID);
    let signer = JwtSigner::new("agent-key-1");
    let agent = Agent::start(
        dir.path(),
        &AgentState::one(GW_ID, &svid, &[ca.der()]).with_jwt("corp.example", &signer),
    );
    let up = Upstream::start().await;
    let caller = ca.svid("spiffe://corp.example/billing");
    let routes = format!(
        "[credentials.workload-mtls]\nkind = \"mtls\"\ntrust_domains = [\"corp.example\"]\n\
         [[routes]]\nname = \"cics\"\nmatch = {{ path_prefix = \"/cics\" }}\naccept = [\"workload-mtls\"]\n\
         allow = [\"spiffe://corp.example/*\"]\n\
         [routes.upstream]\nurl = \"{0}\"\naudience = \"cics-payments\"\ntoken_source = \"workload-api\"\n\
         [[routes]]\nname = \"mq\"\nmatch = {{ path_prefix = \"/mq\" }}\naccept = [\"workload-mtls\"]\n\
         allow = [\"spiffe://corp.example/*\"]\n\
         [routes.upstream]\nurl = \"{0}\"\naudience = \"mq-orders\"\ntoken_source = \"workload-api\"\n",
        up.url()
    );
    let gw = start_in_process(dir.path(), &gateway_config(dir.path(), &agent, &routes)).await;
    for _ in 0..2 {
        assert_eq!(
            get_fresh(gw.data_addr, "/cics/pay", Some(&caller)).await.0,
            Some(200)
        );
    }
    let auth = up.last().headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    let token = auth.strip_prefix("Bearer ").unwrap();
    // Cached: one FetchJWTSVID for two requests.
    assert_eq!(agent.calls("FetchJWTSVID"), 1);

    let jwks = signer.jwks();
    let script = r#"
import json, sys, jwt
jwks, token = sys.argv[1], sys.argv[2]
key = jwt.PyJWKSet.from_json(jwks)[jwt.get_unverified_header(token)["kid"]]
claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="cics-payments")
print(claims["sub"])
try:
    jwt.decode(token, key.key, algorithms=["ES256"], audience="another-upstream")
    print("WRONG AUDIENCE ACCEPTED")
except jwt.InvalidAudienceError:
    print("audience checked")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &jwks, token])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{GW_ID}\naudience checked\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Agent gone: the cached token keeps its route working; a route with nothing cached is
    // refused (fail closed), never forwarded without a token.
    let mut agent = agent;
    agent.stop();
    let hits = up.count();
    assert_eq!(
        get_fresh(gw.data_addr, "/cics/pay", Some(&caller)).await.0,
        Some(200)
    );
    assert_eq!(
        get_fresh(gw.data_addr, "/mq/put", Some(&caller)).await.0,
        Some(502)
    );
    assert_eq!(
        up.count(),
        hits + 1,
        "the request without a token reached the upstream"
    );
    let lines = audit_lines(dir.path(), 4).await;
    let mq = lines.iter().rev().find(|l| l["route"] == "mq").unwrap();
    assert_eq!(mq["reason"], "workload-api-unavailable", "{mq}");
    gw.stop().await;
}

#[tokio::test]
async fn readyz_turns_503_once_the_served_svid_has_expired() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let short = ca.svid_valid(GW_ID, 3);
    let agent = Agent::start(dir.path(), &AgentState::one(GW_ID, &short, &[ca.der()]));
    let up = Upstream::start().await;
    let gw = start_in_process(
        dir.path(),
        &gateway_config(dir.path(), &agent, &route("api", "/api", &up.url(), "")),
    )
    .await;
    let (code, body) = admin_get(&gw, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    let expired = within(Duration::from_secs(8), || async {
        admin_get(&gw, "/readyz").await.0 == 503
    })
    .await;
    assert!(expired.is_some(), "an expired SVID still reported ready");
    let (_, body) = admin_get(&gw, "/readyz").await;
    assert!(body.contains("expired"), "{body}");
    let (_, m) = admin_get(&gw, "/metrics").await;
    assert!(metric(&m, "portcullis_svid_expiry_seconds") <= 0.0);
    gw.stop().await;
}

/// A JWT-SVID signed with `signer`'s key (PyJWT), for `sub` and `aud`.
fn jwt_svid(signer_pem: &str, kid: &str, sub: &str, aud: &str) -> String {
    let script = r#"
import sys, time, jwt
pem, kid, sub, aud = sys.argv[1:5]
now = int(time.time())
print(jwt.encode({"sub": sub, "aud": aud, "iat": now, "exp": now + 300}, pem, algorithm="ES256", headers={"kid": kid, "typ": "JWT"}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, signer_pem, kid, sub, aud])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn jwt_svid_callers_are_checked_against_the_agents_jwt_bundle_as_it_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let svid = ca.svid(GW_ID);
    let old_key = JwtSigner::new("old");
    let new_key = JwtSigner::new("new");
    let mut agent = Agent::start(
        dir.path(),
        &AgentState::one(GW_ID, &svid, &[ca.der()]).with_jwt("corp.example", &old_key),
    );
    let up = Upstream::start().await;
    let routes = format!(
        "[credentials.workload-jwt]\nkind = \"jwt-svid\"\ntrust_domains = [\"corp.example\"]\naudience = \"portcullis\"\n\
         [[routes]]\nname = \"api\"\nmatch = {{ path_prefix = \"/api\" }}\naccept = [\"workload-jwt\"]\n\
         allow = [\"spiffe://corp.example/*\"]\n[routes.upstream]\nurl = \"{}\"\ntoken_header = \"none\"\n",
        up.url()
    );
    let gw = start_in_process(dir.path(), &gateway_config(dir.path(), &agent, &routes)).await;
    let rec = RecordingVerifier::new();
    let c = client(None, &rec);
    let url = format!("https://127.0.0.1:{}/api/x", gw.data_addr.port());
    let call = |token: String| {
        let c = c.clone();
        let url = url.clone();
        async move {
            c.get(&url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let sub = "spiffe://corp.example/billing";
    let old_tok = jwt_svid(&old_key.pem(), "old", sub, "portcullis");
    let new_tok = jwt_svid(&new_key.pem(), "new", sub, "portcullis");
    assert_eq!(call(old_tok.clone()).await, 200);
    assert_eq!(
        call(new_tok.clone()).await,
        401,
        "a key the agent never sent"
    );
    // Hostile twin: the new key's token claiming the old key's kid.
    let forged = jwt_svid(&new_key.pem(), "old", sub, "portcullis");
    assert_eq!(call(forged).await, 401);

    // The agent rotates the JWT authority: the new key is accepted, the old one no longer.
    agent.push(&AgentState::one(GW_ID, &svid, &[ca.der()]).with_jwt("corp.example", &new_key));
    let took = within(Duration::from_secs(1), || {
        call(new_tok.clone()).then(|s| async move { s == 200 })
    })
    .await;
    assert!(
        took.is_some(),
        "the rotated JWT bundle was not used within 1 s"
    );
    assert_eq!(call(old_tok).await, 401);
    gw.stop().await;
}

#[tokio::test]
async fn the_admin_listener_serves_the_svid_too() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let svid = ca.svid(GW_ID);
    let agent = Agent::start(dir.path(), &AgentState::one(GW_ID, &svid, &[ca.der()]));
    let toml = gateway_config(dir.path(), &agent, "")
        .replace(
            "[admin]\naddr = \"127.0.0.1:0\"\n",
            "[admin]\naddr = \"127.0.0.1:0\"\nallow = [\"spiffe://corp.example/ops/*\"]\n[admin.tls]\nsource = \"workload-api\"\n",
        );
    let gw = start_in_process(dir.path(), &toml).await;
    let (status, leaf) = get_fresh(gw.admin_addr, "/readyz", None).await;
    assert_eq!(status, Some(200));
    assert_eq!(leaf.unwrap(), svid.leaf());
    // An operator with an SVID from the agent's bundle reaches the ops API; one outside the
    // allowlist does not.
    let ops = ca.svid("spiffe://corp.example/ops/alice");
    assert_eq!(
        get_fresh(gw.admin_addr, "/admin/v1/inventory", Some(&ops))
            .await
            .0,
        Some(200)
    );
    let other = ca.svid("spiffe://corp.example/billing");
    assert_eq!(
        get_fresh(gw.admin_addr, "/admin/v1/inventory", Some(&other))
            .await
            .0,
        Some(403)
    );
    gw.stop().await;
}

#[tokio::test]
async fn files_mode_client_certificate_and_ordinary_ca_validation_work_without_an_agent() {
    // No [spiffe] at all: the route presents a certificate from files and checks the upstream
    // with `ca` (host name included), as for an upstream whose CA is not SPIRE's.
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let client = ca.svid(GW_ID);
    let (cert, key) = client.write_pem(dir.path(), "client");
    std::fs::write(
        dir.path().join("ca.pem"),
        pem("CERTIFICATE", &[ca.der().as_ref()]),
    )
    .unwrap();
    let (addr, seen) = tls_upstream(&ca.svid_for_ip("spiffe://corp.example/mq"), &ca).await;
    let keys = format!(
        "client_cert = \"{}\"\nclient_key = \"{}\"\nca = \"{}\"",
        cert.display(),
        key.display(),
        dir.path().join("ca.pem").display()
    );
    let toml = base_config(dir.path(), "", "", &mainframe_route("mq", addr, &keys));
    let gw = start_in_process(dir.path(), &toml).await;
    let r = reqwest::get(format!("http://{}/mq/put", gw.data_addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(seen.lock().unwrap().client_ids, [GW_ID]);
    // Hostile twin: an upstream whose certificate does not name the host is refused by `ca`
    // validation (the SPIFFE ID alone does not satisfy ordinary TLS).
    let (addr2, seen2) = tls_upstream(&ca.svid("spiffe://corp.example/mq"), &ca).await;
    let toml = base_config(dir.path(), "", "", &mainframe_route("mq", addr2, &keys));
    gw.stop().await;
    let gw = start_in_process(dir.path(), &toml).await;
    let r = reqwest::get(format!("http://{}/mq/put", gw.data_addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(seen2.lock().unwrap().requests.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn a_broken_update_from_the_agent_keeps_the_previous_svid() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let first = ca.svid(GW_ID);
    let mut agent = Agent::start(dir.path(), &AgentState::one(GW_ID, &first, &[ca.der()]));
    let up = Upstream::start().await;
    let gw = start_in_process(
        dir.path(),
        &gateway_config(dir.path(), &agent, &route("api", "/api", &up.url(), "")),
    )
    .await;
    // A certificate with another SVID's key: refused, the previous SVID stays.
    let mut mismatched = ca.svid(GW_ID);
    mismatched.key = ca.svid(GW_ID).key;
    agent.push(&AgentState::one(GW_ID, &mismatched, &[ca.der()]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, leaf) = get_fresh(gw.data_addr, "/api/a", None).await;
    assert_eq!(status, Some(200));
    assert_eq!(
        leaf.unwrap(),
        first.leaf(),
        "an SVID with the wrong key was served"
    );
    // An SVID for another SPIFFE ID (a changed or mistaken entry): the identity never changes
    // without a restart.
    let other = ca.svid("spiffe://corp.example/not-the-gateway");
    agent.push(&AgentState::one(
        "spiffe://corp.example/not-the-gateway",
        &other,
        &[ca.der()],
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, leaf) = get_fresh(gw.data_addr, "/api/a", None).await;
    assert_eq!(status, Some(200));
    assert_eq!(
        leaf.unwrap(),
        first.leaf(),
        "the gateway's identity changed"
    );
    // A good update is taken as usual.
    let good = ca.svid(GW_ID);
    agent.push(&AgentState::one(GW_ID, &good, &[ca.der()]));
    let want = good.leaf();
    let took = within(Duration::from_secs(1), || {
        let want = want.clone();
        async move { get_fresh(gw.data_addr, "/api/b", None).await.1 == Some(want) }
    })
    .await;
    assert!(took.is_some());
    gw.stop().await;
}
