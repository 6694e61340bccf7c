//! `token_source = "workload-api"` under a burst (issue 17, `docs/spiffe.md`): while a route's
//! JWT-SVID is missing, concurrent requests share one FetchJWTSVID per audience instead of each
//! asking the agent; a failed fetch is shared by the requests that waited on it and forgotten
//! afterwards. The agent is the real gRPC Workload API server, slowed down so that the requests
//! overlap, and it counts the calls it receives.

use std::collections::HashSet;

use futures_util::future::join_all;

use crate::support::*;
use crate::workload_api_support::*;

const GW_ID: &str = "spiffe://corp.example/portcullis";

/// Two routes to `up`, each with its own audience, tokens from the agent.
fn routes(up: &Upstream) -> String {
    format!(
        "[credentials.workload-mtls]\nkind = \"mtls\"\ntrust_domains = [\"corp.example\"]\n\
         [[routes]]\nname = \"cics\"\nmatch = {{ path_prefix = \"/cics\" }}\naccept = [\"workload-mtls\"]\n\
         allow = [\"spiffe://corp.example/*\"]\n\
         [routes.upstream]\nurl = \"{0}\"\naudience = \"cics-payments\"\ntoken_source = \"workload-api\"\n\
         [[routes]]\nname = \"mq\"\nmatch = {{ path_prefix = \"/mq\" }}\naccept = [\"workload-mtls\"]\n\
         allow = [\"spiffe://corp.example/*\"]\n\
         [routes.upstream]\nurl = \"{0}\"\naudience = \"mq-orders\"\ntoken_source = \"workload-api\"\n",
        up.url()
    )
}

/// How many tokens the agent signed for `audience` (it prints one line per JWT-SVID it signs).
fn signed_for(agent: &Agent, audience: &str) -> usize {
    let want = format!("JWT {audience}");
    agent
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| **l == want)
        .count()
}

/// `n` concurrent requests to `path`, each on its own connection; their statuses.
async fn burst(
    gw: &portcullis::server::Running,
    path: &str,
    n: usize,
    caller: &Svid,
) -> Vec<Option<u16>> {
    join_all((0..n).map(|_| async { get_fresh(gw.data_addr, path, Some(caller)).await.0 })).await
}

#[tokio::test]
async fn fifty_concurrent_requests_on_a_cold_cache_cost_the_agent_one_fetch_per_audience() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let signer = JwtSigner::new("agent-key-1");
    let mut state =
        AgentState::one(GW_ID, &ca.svid(GW_ID), &[ca.der()]).with_jwt("corp.example", &signer);
    state.jwt_delay_ms = 400;
    let agent = Agent::start(dir.path(), &state);
    let up = Upstream::start().await;
    let caller = ca.svid("spiffe://corp.example/billing");
    let gw = start_in_process(
        dir.path(),
        &gateway_config(dir.path(), &agent, &routes(&up)),
    )
    .await;
    assert_eq!(
        agent.calls("FetchJWTSVID"),
        0,
        "nothing fetched before a request wants it"
    );

    // 50 on one audience and, at the same time, 10 on another: one flight each, not one shared
    // by both (the other audience's token would be the wrong token).
    let (cics, mq) = tokio::join!(
        burst(&gw, "/cics/pay", 50, &caller),
        burst(&gw, "/mq/put", 10, &caller)
    );
    assert!(cics.iter().all(|s| *s == Some(200)), "{cics:?}");
    assert!(mq.iter().all(|s| *s == Some(200)), "{mq:?}");
    assert_eq!(
        agent.calls("FetchJWTSVID"),
        2,
        "{:?}",
        agent.lines.lock().unwrap()
    );
    assert_eq!(
        signed_for(&agent, "cics-payments"),
        1,
        "{:?}",
        agent.lines.lock().unwrap()
    );
    assert_eq!(signed_for(&agent, "mq-orders"), 1);

    // Every request carried its audience's one token: two distinct tokens over 60 requests.
    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 60);
    let tokens: HashSet<String> = seen
        .iter()
        .map(|s| s.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), 2, "{tokens:?}");

    // Warm now: another burst asks the agent nothing.
    let again = burst(&gw, "/cics/pay", 20, &caller).await;
    assert!(again.iter().all(|s| *s == Some(200)), "{again:?}");
    assert_eq!(agent.calls("FetchJWTSVID"), 2);
    gw.stop().await;
}

#[tokio::test]
async fn a_failed_fetch_is_shared_by_its_waiters_and_the_next_request_tries_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let svid = ca.svid(GW_ID);
    // No JWT signer: the agent refuses FetchJWTSVID (PermissionDenied), slowly.
    let mut refusing = AgentState::one(GW_ID, &svid, &[ca.der()]);
    refusing.jwt_delay_ms = 400;
    let mut agent = Agent::start(dir.path(), &refusing);
    let up = Upstream::start().await;
    let caller = ca.svid("spiffe://corp.example/billing");
    let gw = start_in_process(
        dir.path(),
        &gateway_config(dir.path(), &agent, &routes(&up)),
    )
    .await;

    let refused = burst(&gw, "/cics/pay", 30, &caller).await;
    // Fail closed for everyone who waited on the failed fetch, and one call to the agent.
    assert!(refused.iter().all(|s| *s == Some(502)), "{refused:?}");
    assert_eq!(
        agent.calls("FetchJWTSVID"),
        1,
        "{:?}",
        agent.lines.lock().unwrap()
    );
    assert_eq!(
        up.count(),
        0,
        "a request without its token reached the upstream"
    );
    let lines = audit_lines(dir.path(), 30).await;
    assert!(
        lines
            .iter()
            .all(|l| l["reason"] == "workload-api-unavailable"),
        "{lines:?}"
    );

    // The failure was not cached: once the agent can sign, the next request fetches and passes.
    let signer = JwtSigner::new("agent-key-1");
    agent.push(&AgentState::one(GW_ID, &svid, &[ca.der()]).with_jwt("corp.example", &signer));
    assert_eq!(
        get_fresh(gw.data_addr, "/cics/pay", Some(&caller)).await.0,
        Some(200)
    );
    assert_eq!(agent.calls("FetchJWTSVID"), 2);
    assert_eq!(up.count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_hung_agent_fails_every_waiter_at_the_one_fetch_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("corp.example");
    let signer = JwtSigner::new("agent-key-1");
    // Answers after 8 s: past the gateway's 5 s limit for one FetchJWTSVID.
    let mut hung =
        AgentState::one(GW_ID, &ca.svid(GW_ID), &[ca.der()]).with_jwt("corp.example", &signer);
    hung.jwt_delay_ms = 8000;
    let agent = Agent::start(dir.path(), &hung);
    let up = Upstream::start().await;
    let caller = ca.svid("spiffe://corp.example/billing");
    let gw = start_in_process(
        dir.path(),
        &gateway_config(dir.path(), &agent, &routes(&up)),
    )
    .await;

    let started = std::time::Instant::now();
    // The first request starts the fetch; the rest arrive while it hangs and share its deadline
    // (they do not each wait 5 s of their own).
    let first = tokio::spawn({
        let addr = gw.data_addr;
        let caller = caller.clone();
        async move { get_fresh(addr, "/cics/pay", Some(&caller)).await.0 }
    });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let rest = burst(&gw, "/cics/pay", 20, &caller).await;
    let took = started.elapsed();
    assert_eq!(first.await.unwrap(), Some(502));
    assert!(rest.iter().all(|s| *s == Some(502)), "{rest:?}");
    assert!(
        took < std::time::Duration::from_millis(6500),
        "the waiters outlived the one fetch's deadline: {took:?}"
    );
    assert_eq!(agent.calls("FetchJWTSVID"), 1);
    assert_eq!(up.count(), 0);
    gw.stop().await;
}
