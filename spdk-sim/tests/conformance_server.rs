//! JSON-RPC framing and request validation as spdk_tgt does them.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{json, Value};

use common::SimProcess;

fn read_values(s: &mut UnixStream, n: usize) -> Vec<Value> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let mut chunk = [0u8; 4096];
        let k = s.read(&mut chunk).expect("read");
        assert!(k > 0, "closed early");
        buf.extend_from_slice(&chunk[..k]);
        out = serde_json::Deserializer::from_slice(&buf)
            .into_iter::<Value>()
            .filter_map(Result::ok)
            .collect();
    }
    out
}

#[test]
fn requests_may_be_split_or_batched_on_the_stream_and_each_gets_its_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = SimProcess::start(dir.path());
    let mut s = UnixStream::connect(&sim.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let req = br#"{"jsonrpc":"2.0","method":"spdk_get_version","id":1}"#;
    s.write_all(&req[..20]).expect("w1");
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(&req[20..]).expect("w2");
    s.write_all(br#"{"jsonrpc":"2.0","method":"nope","id":"x"} {"jsonrpc":"2.0","id":7}{"jsonrpc":"1.0","method":"spdk_get_version","id":8}"#)
        .expect("w3");
    let mut got = read_values(&mut s, 4);
    got.sort_by_key(|v| v["id"].to_string());
    let by_id = |id: Value| got.iter().find(|v| v["id"] == id).cloned();
    assert_eq!(
        by_id(json!(1)).expect("id 1")["result"]["version"],
        json!("SPDK v25.09")
    );
    assert_eq!(
        by_id(json!("x")).expect("id x")["error"],
        json!({"code": -32601, "message": "Method not found"})
    );
    // Invalid requests are answered with a null id, like spdk_tgt.
    let invalid: Vec<&Value> = got.iter().filter(|v| v["id"].is_null()).collect();
    assert_eq!(invalid.len(), 2);
    for v in invalid {
        assert_eq!(
            v["error"],
            json!({"code": -32600, "message": "Invalid request"})
        );
    }
}

#[test]
fn malformed_json_closes_the_connection_without_an_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = SimProcess::start(dir.path());
    let mut s = UnixStream::connect(&sim.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s.write_all(b"{\"jsonrpc\":\"2.0\",,}").expect("write");
    let mut buf = [0u8; 64];
    assert_eq!(s.read(&mut buf).expect("read"), 0, "expected EOF");
    // The server itself keeps serving.
    let mut rpc = sim.rpc();
    assert_eq!(rpc.ok("bdev_get_bdevs", Value::Null), json!([]));
}
