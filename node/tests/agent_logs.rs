//! The agent's logs, captured at TRACE, never contain the bearer token.

mod agent_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use agent_support::{bearer, TestAgent, TOKEN};
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_token_never_reaches_the_logs() {
    let capture = Capture::default();
    let sink = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();

    let agent = TestAgent::start().await;
    agent.rpc("bdev_get_bdevs", json!({})).await;
    agent.rpc("spdk_kill_instance", json!({})).await;
    let wrong = format!("Bearer {TOKEN}-wrong");
    agent.send("POST", "/jsonrpc", Some(&wrong), "{}").await;
    agent.send("GET", "/identity", Some(&bearer()), "").await;
    tracing::debug!(config = ?shorthorn_node::agent::BearerToken::new(TOKEN).unwrap(), "debug print");
    agent.stop().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // The calls were logged (so the capture works) ...
    assert!(logs.contains("bdev_get_bdevs"), "{logs}");
    assert!(logs.contains("spdk_kill_instance"), "{logs}");
    assert!(logs.contains("redacted"), "{logs}");
    // ... and the secret never was, whole or in part.
    assert!(
        !logs.contains(&TOKEN[4..20]),
        "token leaked into logs:\n{logs}"
    );
    assert!(
        !logs.to_ascii_lowercase().contains("authorization"),
        "{logs}"
    );
}
