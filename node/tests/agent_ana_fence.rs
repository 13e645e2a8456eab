//! The node agent's ANA fence lease over real HTTP, in front of a fake
//! spdk_tgt that keeps each listener's ANA state and records every call:
//! hostile requests never reach SPDK, a lease that runs out restores the
//! optimized path by itself (retrying until SPDK accepts), resume says
//! whether the lease had run out, and a restarted agent restores the paths
//! its previous run left inaccessible.

mod agent_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_support::{bearer, FakeReply, Responder, TestAgent};
use http::StatusCode;
use serde_json::{json, Value};

const VOL: &str = "nqn.2025-11.io.shorthorn:volume:0b3c6f52-9a51-4c8e-8f43-2f6a7a3a9c11";
const VOL2: &str = "nqn.2025-11.io.shorthorn:volume:7d7c9b7e-1f0e-4c34-a3c5-0c9d5b6a2e01";
const FOREIGN: &str = "nqn.2016-06.io.spdk:cnode1";
const SET_ANA: &str = "nvmf_subsystem_listener_set_ana_state";
const DRAIN: &str = "nvmf_subsystem_set_ns_ana_group";

/// spdk_tgt's side of the ANA calls: subsystems with listeners, each with
/// an ANA state; refusals and hangs to order.
#[derive(Default)]
struct AnaTarget {
    /// (nqn, traddr, port) -> ANA state.
    listeners: Mutex<BTreeMap<(String, String, String), String>>,
    /// Refuse this many more `optimized` settings.
    refuse_optimized: AtomicU32,
    /// Never answer the drain barrier.
    hang_drain: AtomicBool,
}

impl AnaTarget {
    fn with(listeners: &[(&str, &str, &str, &str)]) -> Arc<Self> {
        let t = AnaTarget::default();
        for (nqn, addr, port, state) in listeners {
            t.listeners.lock().unwrap().insert(
                (nqn.to_string(), addr.to_string(), port.to_string()),
                state.to_string(),
            );
        }
        Arc::new(t)
    }

    fn state(&self, nqn: &str, addr: &str, port: &str) -> String {
        self.listeners.lock().unwrap()[&(nqn.to_string(), addr.to_string(), port.to_string())]
            .clone()
    }

    fn responder(self: &Arc<Self>) -> Responder {
        let t = Arc::clone(self);
        Arc::new(move |method, params| t.answer(method, params))
    }

    fn answer(&self, method: &str, p: &Value) -> Option<FakeReply> {
        let listeners = self.listeners.lock().unwrap();
        match method {
            "nvmf_get_subsystems" => {
                let mut subs: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
                for (nqn, addr, port) in listeners.keys() {
                    subs.entry(nqn).or_default().push(json!({
                        "trtype": "TCP", "adrfam": "IPv4", "traddr": addr, "trsvcid": port
                    }));
                }
                let list: Vec<Value> = subs
                    .into_iter()
                    .map(|(nqn, addrs)| {
                        json!({"nqn": nqn, "subtype": "NVMe", "listen_addresses": addrs,
                        "allow_any_host": false, "hosts": [], "namespaces": []})
                    })
                    .collect();
                Some(FakeReply::Result(Value::Array(list)))
            }
            "nvmf_subsystem_get_listeners" => {
                let nqn = p["nqn"].as_str().unwrap_or_default();
                let list: Vec<Value> = listeners
                    .iter()
                    .filter(|((n, _, _), _)| n == nqn)
                    .map(|((_, addr, port), state)| json!({
                        "address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": addr, "trsvcid": port},
                        "ana_states": [{"ana_group": 1, "ana_state": state}, {"ana_group": 2, "ana_state": state}],
                    }))
                    .collect();
                Some(FakeReply::Result(Value::Array(list)))
            }
            SET_ANA => {
                drop(listeners);
                let state = p["ana_state"].as_str().unwrap_or_default().to_string();
                if state == "optimized"
                    && self
                        .refuse_optimized
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                {
                    return Some(FakeReply::Error(-32602, "Invalid parameters".into()));
                }
                let a = &p["listen_address"];
                let key = (
                    p["nqn"].as_str().unwrap_or_default().to_string(),
                    a["traddr"].as_str().unwrap_or_default().to_string(),
                    a["trsvcid"].as_str().unwrap_or_default().to_string(),
                );
                let mut listeners = self.listeners.lock().unwrap();
                match listeners.get_mut(&key) {
                    Some(s) => {
                        *s = state;
                        Some(FakeReply::Result(json!(true)))
                    }
                    None => Some(FakeReply::Error(-32602, "Invalid parameters".into())),
                }
            }
            DRAIN if self.hang_drain.load(Ordering::SeqCst) => Some(FakeReply::Hang),
            _ => None,
        }
    }
}

fn listener(addr: &str, port: &str) -> Value {
    json!({"trtype": "TCP", "adrfam": "IPv4", "traddr": addr, "trsvcid": port})
}

fn suspend_body(nqn: &str, deadline_ms: u64) -> String {
    json!({"nqn": nqn, "listener": listener("127.0.0.1", "4420"), "deadline_ms": deadline_ms})
        .to_string()
}

fn resume_body(nqn: &str) -> String {
    json!({"nqn": nqn, "listener": listener("127.0.0.1", "4420")}).to_string()
}

async fn post(agent: &TestAgent, path: &str, body: String) -> (StatusCode, Value) {
    let (status, body) = agent.send("POST", path, Some(&bearer()), body).await;
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    (status, value)
}

fn optimized_sets(agent: &TestAgent) -> usize {
    agent
        .spdk
        .params_of(SET_ANA)
        .iter()
        .filter(|p| p["ana_state"] == "optimized")
        .count()
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn hostile_fence_requests_are_refused_and_spdk_never_sees_them() {
    let target = AnaTarget::with(&[(VOL, "127.0.0.1", "4420", "optimized")]);
    let agent = TestAgent::start_scripted(target.responder(), |_| {}).await;
    let lo = listener("127.0.0.1", "4420");
    let suspends = [
        (
            json!({"nqn": FOREIGN, "listener": lo, "deadline_ms": 1000}),
            "not a Shorthorn volume subsystem",
        ),
        (
            json!({"nqn": "nqn.2014-08.org.nvmexpress.discovery", "listener": lo, "deadline_ms": 1000}),
            "not a Shorthorn volume subsystem",
        ),
        (
            json!({"nqn": "nqn.2025-11.io.shorthorn:replica:0b3c6f52-9a51-4c8e-8f43-2f6a7a3a9c11:node-a", "listener": lo, "deadline_ms": 1000}),
            "not a Shorthorn volume subsystem",
        ),
        (
            json!({"nqn": "nqn.2025-11.io.shorthorn:volume:../../etc", "listener": lo, "deadline_ms": 1000}),
            "not a volume uuid",
        ),
        (
            json!({"nqn": format!("{VOL},traddr=6.6.6.6"), "listener": lo, "deadline_ms": 1000}),
            "not a Shorthorn volume subsystem",
        ),
        (
            json!({"nqn": VOL, "listener": listener("10.0.0.7", "4420"), "deadline_ms": 1000}),
            "not a loopback address",
        ),
        (
            json!({"nqn": VOL, "listener": listener("localhost", "4420"), "deadline_ms": 1000}),
            "not a loopback address",
        ),
        (
            json!({"nqn": VOL, "listener": {"trtype": "RDMA", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "4420"}, "deadline_ms": 1000}),
            "not TCP",
        ),
        (
            json!({"nqn": VOL, "listener": listener("127.0.0.1", "0"), "deadline_ms": 1000}),
            "not a TCP port",
        ),
        (
            json!({"nqn": VOL, "listener": lo, "deadline_ms": 0}),
            "deadline_ms 0 must be between 1 and 60000",
        ),
        (
            json!({"nqn": VOL, "listener": lo, "deadline_ms": 3_600_000}),
            "must be between 1 and 60000",
        ),
        (
            json!({"nqn": VOL, "listener": lo, "deadline_ms": 1000, "anagrpid": 2}),
            "unknown field",
        ),
        (json!({"nqn": VOL, "deadline_ms": 1000}), "missing field"),
        (
            json!({"nqn": VOL, "listener": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "4420", "tgt_name": "x"}, "deadline_ms": 1000}),
            "unknown field",
        ),
    ];
    for (body, why) in &suspends {
        let (status, answer) = post(&agent, "/fence/ana/suspend", body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(why),
            "{body}: {message:?} should say {why:?}"
        );
    }
    let resumes = [
        json!({"nqn": FOREIGN, "listener": lo}),
        json!({"nqn": VOL, "listener": listener("192.168.1.9", "4420")}),
        json!({"nqn": VOL}),
    ];
    for body in &resumes {
        let (status, answer) = post(&agent, "/fence/ana/resume", body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    let (status, _) = post(&agent, "/fence/ana/suspend", "{not json".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = agent
        .send("POST", "/fence/ana/suspend", None, suspend_body(VOL, 1000))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = agent
        .send("GET", "/fence/ana/resume", Some(&bearer()), "")
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        agent.spdk.methods().is_empty(),
        "reached SPDK: {:?}",
        agent.spdk.methods()
    );
    assert_eq!(target.state(VOL, "127.0.0.1", "4420"), "optimized");
    agent.stop().await;
}

#[tokio::test]
async fn a_lease_that_runs_out_restores_optimized_retrying_until_spdk_accepts() {
    let target = AnaTarget::with(&[(VOL, "127.0.0.1", "4420", "optimized")]);
    let agent = TestAgent::start_scripted(target.responder(), |_| {}).await;
    let started = Instant::now();
    let (status, answer) = post(&agent, "/fence/ana/suspend", suspend_body(VOL, 400)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["extended"], false);
    assert_eq!(target.state(VOL, "127.0.0.1", "4420"), "inaccessible");
    assert_eq!(
        agent.spdk.methods(),
        [SET_ANA, DRAIN],
        "inaccessible, then the drain barrier"
    );
    let drain = &agent.spdk.params_of(DRAIN)[0];
    assert_eq!(*drain, json!({"nqn": VOL, "nsid": 1, "anagrpid": 1}));

    // SPDK refuses the lease's first three attempts; the fourth gets through.
    target.refuse_optimized.store(3, Ordering::SeqCst);
    wait_until(
        "the lease restores optimized",
        Duration::from_secs(10),
        || target.state(VOL, "127.0.0.1", "4420") == "optimized",
    )
    .await;
    let restored_after = started.elapsed();
    assert!(
        restored_after >= Duration::from_millis(400),
        "{restored_after:?}"
    );
    assert_eq!(optimized_sets(&agent), 4, "three refused, one accepted");
    println!("MEASURE lease of 400 ms restored optimized after {restored_after:?} (3 refusals)");

    // A resume afterwards restores again (idempotent) and says the lease ran out.
    let (status, answer) = post(&agent, "/fence/ana/resume", resume_body(VOL)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["expired"], true);
    agent.stop().await;
}

#[tokio::test]
async fn a_resume_in_time_ends_the_lease_and_says_it_held() {
    let target = AnaTarget::with(&[(VOL, "127.0.0.1", "4420", "optimized")]);
    let agent = TestAgent::start_scripted(target.responder(), |_| {}).await;
    let (status, _) = post(&agent, "/fence/ana/suspend", suspend_body(VOL, 600)).await;
    assert_eq!(status, StatusCode::OK);
    // A second suspend extends the one lease; SPDK sees nothing new.
    let (status, answer) = post(&agent, "/fence/ana/suspend", suspend_body(VOL, 600)).await;
    assert_eq!(
        (status, &answer["extended"]),
        (StatusCode::OK, &json!(true))
    );
    assert_eq!(agent.spdk.methods(), [SET_ANA, DRAIN]);
    // The same subsystem on another listener is a conflict, not a second fence.
    let other = json!({"nqn": VOL, "listener": listener("127.0.0.1", "4421"), "deadline_ms": 600});
    let (status, answer) = post(&agent, "/fence/ana/suspend", other.to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");

    let (status, answer) = post(&agent, "/fence/ana/resume", resume_body(VOL)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["expired"], false, "{answer}");
    assert!(answer["held_ms"].as_u64().unwrap() < 600, "{answer}");
    assert_eq!(target.state(VOL, "127.0.0.1", "4420"), "optimized");
    // The ended lease does nothing when its deadline passes.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(optimized_sets(&agent), 1, "{:?}", agent.spdk.methods());
    agent.stop().await;
}

#[tokio::test]
async fn a_resume_spdk_refuses_is_503_and_the_lease_still_restores() {
    let target = AnaTarget::with(&[(VOL, "127.0.0.1", "4420", "optimized")]);
    let agent = TestAgent::start_scripted(target.responder(), |_| {}).await;
    let (status, _) = post(&agent, "/fence/ana/suspend", suspend_body(VOL, 800)).await;
    assert_eq!(status, StatusCode::OK);
    target.refuse_optimized.store(u32::MAX, Ordering::SeqCst);
    let (status, answer) = post(&agent, "/fence/ana/resume", resume_body(VOL)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains(SET_ANA),
        "{answer}"
    );
    assert_eq!(optimized_sets(&agent), 3, "a resume tries three times");
    assert_eq!(target.state(VOL, "127.0.0.1", "4420"), "inaccessible");
    // SPDK comes round; the lease, still in place, restores by its deadline.
    target.refuse_optimized.store(0, Ordering::SeqCst);
    wait_until(
        "the lease restores optimized",
        Duration::from_secs(5),
        || target.state(VOL, "127.0.0.1", "4420") == "optimized",
    )
    .await;
    let (status, answer) = post(&agent, "/fence/ana/resume", resume_body(VOL)).await;
    assert_eq!((status, &answer["expired"]), (StatusCode::OK, &json!(true)));
    agent.stop().await;
}

#[tokio::test]
async fn a_drain_that_hangs_fails_the_suspend_and_the_lease_restores() {
    let target = AnaTarget::with(&[(VOL, "127.0.0.1", "4420", "optimized")]);
    target.hang_drain.store(true, Ordering::SeqCst);
    let agent = TestAgent::start_scripted(target.responder(), |_| {}).await;
    let started = Instant::now();
    let (status, answer) = post(&agent, "/fence/ana/suspend", suspend_body(VOL, 500)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    wait_until(
        "the lease restores optimized",
        Duration::from_secs(5),
        || target.state(VOL, "127.0.0.1", "4420") == "optimized",
    )
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn a_suspend_spdk_refuses_is_409_and_leaves_no_lease() {
    // No such subsystem on this node: SPDK refuses the first call.
    let target = AnaTarget::with(&[]);
    let agent = TestAgent::start_scripted(target.responder(), |_| {}).await;
    let (status, answer) = post(&agent, "/fence/ana/suspend", suspend_body(VOL, 200)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains(SET_ANA),
        "{answer}"
    );
    // SPDK changed nothing, so nothing is undone and no lease lingers.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(agent.spdk.methods(), [SET_ANA]);
    agent.stop().await;
}

#[tokio::test]
async fn a_restarted_agent_restores_the_volume_paths_left_inaccessible() {
    let target = AnaTarget::with(&[
        (VOL, "127.0.0.1", "4420", "inaccessible"),
        (VOL2, "127.0.0.1", "4420", "optimized"),
        // Not the fence's to touch: a foreign subsystem, a remote listener.
        (FOREIGN, "127.0.0.1", "4420", "inaccessible"),
        (VOL2, "10.0.0.7", "4420", "inaccessible"),
    ]);
    let agent = TestAgent::start_scripted(target.responder(), |_| {}).await;
    wait_until("the start-up restore", Duration::from_secs(5), || {
        target.state(VOL, "127.0.0.1", "4420") == "optimized"
    })
    .await;
    assert_eq!(target.state(VOL2, "127.0.0.1", "4420"), "optimized");
    assert_eq!(target.state(FOREIGN, "127.0.0.1", "4420"), "inaccessible");
    assert_eq!(target.state(VOL2, "10.0.0.7", "4420"), "inaccessible");
    // A resume of that fence finds no lease: it says the lease ran out.
    let (status, answer) = post(&agent, "/fence/ana/resume", resume_body(VOL)).await;
    assert_eq!((status, &answer["expired"]), (StatusCode::OK, &json!(true)));
    agent.stop().await;
}
