//! The node agent over real HTTP, in front of a fake spdk_tgt that records
//! every call, so refusals are proven never to reach SPDK.

mod agent_support;

use agent_support::{bearer, TestAgent, TOKEN};
use http::StatusCode;
use serde_json::{json, Value};

const GET_VERSION: &str = r#"{"jsonrpc":"2.0","method":"spdk_get_version","id":1}"#;

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_before_spdk() {
    let agent = TestAgent::start().await;
    let wrong_scheme = format!("Basic {TOKEN}");
    let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let longer = format!("Bearer {TOKEN}x");
    for auth in [
        None,
        Some("Bearer nope"),
        Some(&*wrong_scheme),
        Some(&*prefix),
        Some(&*longer),
        Some(TOKEN),
    ] {
        let (status, _) = agent.send("POST", "/jsonrpc", auth, GET_VERSION).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "auth {auth:?}");
        let (status, _) = agent.send("GET", "/identity", auth, "").await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "identity with auth {auth:?}"
        );
    }
    assert!(
        agent.spdk.methods().is_empty(),
        "reached SPDK: {:?}",
        agent.spdk.methods()
    );
    agent.stop().await;
}

#[tokio::test]
async fn methods_off_the_allowlist_are_forbidden() {
    let agent = TestAgent::start().await;
    for method in ["spdk_kill_instance", "bdev_malloc_create", "log_set_level"] {
        let (status, body) = agent.rpc(method, json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}");
        assert!(body["error"].as_str().unwrap().contains(method));
    }
    // A duplicate key cannot smuggle a forbidden method past the check.
    let sneaky =
        r#"{"jsonrpc":"2.0","method":"spdk_get_version","method":"spdk_kill_instance","id":1}"#;
    let (status, _) = agent
        .send("POST", "/jsonrpc", Some(&bearer()), sneaky)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        agent.spdk.methods().is_empty(),
        "reached SPDK: {:?}",
        agent.spdk.methods()
    );
    agent.stop().await;
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let agent = TestAgent::start().await;
    let padding = "x".repeat(2 * 1024 * 1024);
    let big = format!(
        r#"{{"jsonrpc":"2.0","method":"bdev_get_bdevs","params":{{"name":"{padding}"}},"id":1}}"#
    );
    let (status, _) = agent.send("POST", "/jsonrpc", Some(&bearer()), big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    for bad in [
        "{not json",
        r#"[{"jsonrpc":"2.0","method":"bdev_get_bdevs","id":1}]"#,
        r#"{"jsonrpc":"2.0","method":"bdev_get_bdevs"}"#,
        r#"{"jsonrpc":"2.0","method":"bdev_get_bdevs","id":1} trailing"#,
    ] {
        let (status, _) = agent.send("POST", "/jsonrpc", Some(&bearer()), bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert!(
        agent.spdk.methods().is_empty(),
        "reached SPDK: {:?}",
        agent.spdk.methods()
    );
    agent.stop().await;
}

#[tokio::test]
async fn allowed_calls_pass_through_with_spdk_results_and_errors() {
    let agent = TestAgent::start().await;
    let (status, body) = agent
        .rpc("bdev_get_bdevs", json!({"name": "lvs0/vol-1"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], json!(42));
    assert_eq!(body["result"][0]["name"], "lvs0/vol-1");

    let (status, body) = agent
        .rpc("bdev_lvol_delete", json!({"name": "shorthorn/shv-gone"}))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "SPDK errors are JSON-RPC answers, not HTTP errors"
    );
    assert_eq!(
        body["error"],
        json!({"code": -19, "message": "No such device"})
    );

    assert_eq!(agent.spdk.methods(), ["bdev_get_bdevs", "bdev_lvol_delete"]);
    agent.stop().await;
}

#[tokio::test]
async fn a_silent_spdk_times_out_with_504() {
    let agent =
        TestAgent::start_with(|c| c.request_timeout = std::time::Duration::from_millis(300)).await;
    let (status, _) = agent.rpc("bdev_wait_for_examine", json!({})).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    agent.stop().await;
}

#[tokio::test]
async fn a_missing_spdk_socket_is_a_502() {
    let agent = TestAgent::start_with(|c| c.spdk_socket = "/nonexistent/spdk.sock".into()).await;
    let (status, _) = agent.rpc("spdk_get_version", json!({})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    agent.stop().await;
}

#[tokio::test]
async fn identity_reports_node_address_topology_and_a_stable_host_nqn() {
    let agent = TestAgent::start().await;
    let (status, body) = agent.send("GET", "/identity", Some(&bearer()), "").await;
    assert_eq!(status, StatusCode::OK);
    let id: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(id["node_name"], "node-a");
    assert_eq!(id["nvmf_address"], "10.0.0.7");
    assert_eq!(id["nvmf_port"], 4420);
    assert_eq!(id["topology"]["topology.kubernetes.io/zone"], "z1");
    assert!(id["kernel"]["tools"].is_object());
    assert!(id["frontends"].is_array());
    let hostid = id["hostid"].as_str().unwrap();
    assert_eq!(
        id["hostnqn"],
        format!("nqn.2014-08.org.nvmexpress:uuid:{hostid}")
    );
    let persisted = std::fs::read_to_string(agent.dir.path().join("state/hostid")).unwrap();
    assert_eq!(persisted.trim(), hostid);
    agent.stop().await;
}

#[tokio::test]
async fn healthz_needs_no_token_and_unknown_routes_are_404() {
    let agent = TestAgent::start().await;
    let (status, body) = agent.send("GET", "/healthz", None, "").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    let (status, _) = agent.send("GET", "/nope", Some(&bearer()), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = agent.send("GET", "/jsonrpc", Some(&bearer()), "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    agent.stop().await;
}

#[tokio::test]
async fn startup_fails_clearly_on_an_empty_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "\n").unwrap();
    let config = shorthorn_node::agent::AgentConfig::new(
        "n",
        token,
        dir.path().join("s.sock"),
        dir.path().into(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = shorthorn_node::agent::serve_agent(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[tokio::test]
async fn quiesce_refuses_volumes_the_node_has_not_staged() {
    let agent = TestAgent::start().await;
    let suspend = json!({"volume_id": "vol-9", "target": "/", "deadline_ms": 1000}).to_string();
    let (status, body) = agent
        .send("POST", "/quiesce/suspend", Some(&bearer()), suspend)
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let too_long = json!({"volume_id": "vol-9", "deadline_ms": 3_600_000}).to_string();
    let (status, _) = agent
        .send("POST", "/quiesce/suspend", Some(&bearer()), too_long)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = agent
        .send(
            "POST",
            "/quiesce/resume",
            Some(&bearer()),
            r#"{"volume_id":"vol-9"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).unwrap();
    // Nothing was held, so nothing done under a fence is proven fenced.
    assert_eq!(
        body,
        json!({"volume_id": "vol-9", "held_ms": 0, "expired": true})
    );
    let (status, _) = agent
        .send("POST", "/quiesce/resume", None, r#"{"volume_id":"vol-9"}"#)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    agent.stop().await;
}

/// One `GET /metrics` without a token, parsed as Prometheus does.
async fn agent_metrics(agent: &TestAgent) -> prometheus_parse::Scrape {
    let (status, body) = agent.send("GET", "/metrics", None, "").await;
    assert_eq!(status, StatusCode::OK, "/metrics needs no token");
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

fn agent_value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_token_failures() {
    let agent = TestAgent::start().await;
    let before = agent_metrics(&agent).await;
    for _ in 0..2 {
        let (status, _) = agent
            .send("GET", "/identity", Some("Bearer nope"), "")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = agent.send("GET", "/identity", Some(&bearer()), "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = agent
        .send("GET", "/no/such/route/123", Some(&bearer()), "")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let after = agent_metrics(&agent).await;
    let moved = |metric: &str, labels: &[(&str, &str)]| {
        agent_value(&after, metric, labels) - agent_value(&before, metric, labels)
    };
    assert_eq!(moved("shorthorn_agent_auth_failures_total", &[]), 2.0);
    let identity = |status| [("route", "/identity"), ("status", status)];
    assert_eq!(
        moved("shorthorn_agent_requests_total", &identity("401")),
        2.0
    );
    assert_eq!(
        moved("shorthorn_agent_requests_total", &identity("200")),
        1.0
    );
    // Unknown paths share one label, whatever they are.
    assert_eq!(
        moved(
            "shorthorn_agent_requests_total",
            &[("route", "other"), ("status", "404")]
        ),
        1.0
    );
    assert!(after.samples.iter().all(|s| s
        .labels
        .get("route")
        .is_none_or(|r| r != "/no/such/route/123")));
    assert_eq!(
        moved(
            "shorthorn_agent_request_duration_seconds_count",
            &[("route", "/identity")]
        ),
        3.0
    );
    // The token appears nowhere in what Prometheus reads.
    let (_, raw) = agent.send("GET", "/metrics", None, "").await;
    assert!(!String::from_utf8_lossy(&raw).contains(TOKEN));
    agent.stop().await;
}
