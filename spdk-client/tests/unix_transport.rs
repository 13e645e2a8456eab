//! UnixTransport against a scripted fake spdk_tgt socket.

use std::time::Duration;

use serde_json::{json, Value};
use spdk_client::{BdevLvolCreateParams, SpdkClient, SpdkError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

/// A listening socket in a private temp dir.
struct FakeServer {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    listener: UnixListener,
}

impl FakeServer {
    fn new() -> FakeServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spdk.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        FakeServer {
            _dir: dir,
            path,
            listener,
        }
    }

    fn client(&self) -> SpdkClient {
        SpdkClient::unix(&self.path).with_timeout(Duration::from_secs(10))
    }
}

/// Reads requests off one connection, tolerating any split.
struct Conn {
    stream: UnixStream,
    buffer: Vec<u8>,
}

impl Conn {
    async fn accept(listener: &UnixListener) -> Conn {
        let (stream, _) = listener.accept().await.expect("accept");
        Conn {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Reads exactly `n` request objects (cancel-safe while waiting for data).
    async fn requests(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let mut stream =
                serde_json::Deserializer::from_slice(&self.buffer).into_iter::<Value>();
            while out.len() < n {
                match stream.next() {
                    Some(Ok(v)) => out.push(v),
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => panic!("client sent bad JSON: {e}"),
                    None => break,
                }
            }
            let used = stream.byte_offset();
            self.buffer.drain(..used);
            if out.len() >= n {
                break;
            }
            let mut chunk = [0u8; 4096];
            let got = self.stream.read(&mut chunk).await.expect("read");
            assert!(got > 0, "client closed early");
            self.buffer.extend_from_slice(&chunk[..got]);
        }
        out
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }
}

fn answer(request: &Value, result: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
        .expect("encode")
}

#[tokio::test]
async fn two_responses_in_one_write() {
    let server = FakeServer::new();
    let client = server.client();
    let serve = async {
        let mut conn = Conn::accept(&server.listener).await;
        let reqs = conn.requests(2).await;
        let mut both = answer(&reqs[0], json!(format!("r-{}", reqs[0]["method"])));
        both.extend(answer(&reqs[1], json!(format!("r-{}", reqs[1]["method"]))));
        conn.write(&both).await;
        conn
    };
    let (a, b, _conn) = tokio::join!(
        client.call_raw("first", None),
        client.call_raw("second", None),
        serve
    );
    assert_eq!(a.expect("first"), json!("r-\"first\""));
    assert_eq!(b.expect("second"), json!("r-\"second\""));
}

#[tokio::test]
async fn response_split_across_writes() {
    let server = FakeServer::new();
    let client = server.client();
    let serve = async {
        let mut conn = Conn::accept(&server.listener).await;
        let req = conn.requests(1).await.remove(0);
        let bytes = answer(
            &req,
            json!({"version": "SPDK v25.09", "fields": {"major": 25, "minor": 9, "patch": 0, "suffix": ""}}),
        );
        for piece in bytes.chunks(7) {
            conn.write(piece).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        conn
    };
    let (version, _conn) = tokio::join!(client.spdk_get_version(), serve);
    let version = version.expect("version");
    assert_eq!(version.version, "SPDK v25.09");
    assert_eq!(version.fields.minor, 9);
}

#[tokio::test]
async fn out_of_order_answers_reach_their_callers() {
    let server = FakeServer::new();
    let client = server.client();
    let serve = async {
        let mut conn = Conn::accept(&server.listener).await;
        let reqs = conn.requests(3).await;
        for req in reqs.iter().rev() {
            let bytes = answer(req, req["params"]["n"].clone());
            conn.write(&bytes).await;
        }
        conn
    };
    let (a, b, c, _conn) = tokio::join!(
        client.call_raw("m", Some(json!({"n": 1}))),
        client.call_raw("m", Some(json!({"n": 2}))),
        client.call_raw("m", Some(json!({"n": 3}))),
        serve
    );
    assert_eq!(
        (a.expect("a"), b.expect("b"), c.expect("c")),
        (json!(1), json!(2), json!(3))
    );
}

#[tokio::test]
async fn dropped_connection_fails_in_flight_call_and_next_call_reconnects() {
    let server = FakeServer::new();
    let client = server.client();
    let serve_and_drop = async {
        let mut conn = Conn::accept(&server.listener).await;
        conn.requests(1).await;
        drop(conn);
    };
    let (first, ()) = tokio::join!(client.call_raw("m", None), serve_and_drop);
    let err = first.expect_err("connection dropped");
    assert!(matches!(err, SpdkError::Transport(_)), "{err:?}");

    let serve_again = async {
        let mut conn = Conn::accept(&server.listener).await;
        let req = conn.requests(1).await.remove(0);
        conn.write(&answer(&req, json!("again"))).await;
        conn
    };
    let (second, _conn) = tokio::join!(client.call_raw("m", None), serve_again);
    assert_eq!(second.expect("reconnected"), json!("again"));
}

#[tokio::test]
async fn unanswered_call_times_out_and_connection_stays_usable() {
    let server = FakeServer::new();
    let client = server.client();
    let serve = async {
        let mut conn = Conn::accept(&server.listener).await;
        let ignored = conn.requests(1).await.remove(0);
        let req = conn.requests(1).await.remove(0);
        // A late answer to the abandoned call must not confuse anyone.
        conn.write(&answer(&ignored, json!("late"))).await;
        conn.write(&answer(&req, json!("fresh"))).await;
        conn
    };
    let calls = async {
        let quick = client.clone().with_timeout(Duration::from_millis(100));
        let timed_out = quick.call_raw("slow", None).await;
        let fresh = client.call_raw("fast", None).await;
        (timed_out, fresh)
    };
    let ((timed_out, fresh), _conn) = tokio::join!(calls, serve);
    assert!(timed_out.expect_err("no answer").is_timeout());
    assert_eq!(fresh.expect("second call"), json!("fresh"));
    assert_eq!(client.call_count(), 2, "clones share counters");
}

#[tokio::test]
async fn hundred_concurrent_calls_get_their_own_answers() {
    let server = FakeServer::new();
    let client = server.client();
    let serve = async {
        let mut conn = Conn::accept(&server.listener).await;
        let mut answered = 0;
        while answered < 100 {
            // Answer in batches, newest first, to scramble the order.
            let batch = conn.requests(1).await;
            let mut pending = batch;
            while let Ok(more) =
                tokio::time::timeout(Duration::from_millis(5), conn.requests(1)).await
            {
                pending.extend(more);
                if answered + pending.len() >= 100 {
                    break;
                }
            }
            let mut out = Vec::new();
            for req in pending.iter().rev() {
                let n = req["params"]["n"].as_u64().expect("n");
                out.extend(answer(req, json!(n * 2)));
            }
            answered += pending.len();
            conn.write(&out).await;
        }
        conn
    };
    let calls = async {
        let mut set = JoinSet::new();
        for n in 0..100u64 {
            let client = client.clone();
            set.spawn(async move {
                let got: u64 = client
                    .call("double", Some(&json!({"n": n})))
                    .await
                    .expect("answer");
                (n, got)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = set.join_next().await {
            results.push(joined.expect("task"));
        }
        results
    };
    let (results, _conn) = tokio::join!(calls, serve);
    assert_eq!(results.len(), 100);
    for (n, got) in results {
        assert_eq!(got, n * 2, "call {n} got someone else's answer");
    }
    assert_eq!(client.call_count(), 100);
    assert_eq!(client.calls_by_method().get("double"), Some(&100));
}

#[tokio::test]
async fn typed_call_sends_spdk_wire_format_and_classifies_errors() {
    let server = FakeServer::new();
    let client = server.client();
    let serve = async {
        let mut conn = Conn::accept(&server.listener).await;
        let create = conn.requests(1).await.remove(0);
        let error = json!({"jsonrpc": "2.0", "id": create["id"], "error": {"code": -32602, "message": "No space left on device"}});
        conn.write(&serde_json::to_vec(&error).expect("encode"))
            .await;
        let examine = conn.requests(1).await.remove(0);
        conn.write(&answer(&examine, json!(true))).await;
        (create, examine, conn)
    };
    let params = BdevLvolCreateParams {
        lvol_name: "vol1".into(),
        size_in_mib: 64,
        thin_provision: Some(false),
        lvs_name: Some("lvs0".into()),
        ..Default::default()
    };
    let calls = async {
        let created = client.bdev_lvol_create(&params).await;
        let examined = client.bdev_wait_for_examine().await;
        (created, examined)
    };
    let ((created, examined), (create, examine, _conn)) = tokio::join!(calls, serve);
    assert!(created.expect_err("no space").is_no_space());
    examined.expect("examine");
    assert_eq!(create["jsonrpc"], "2.0");
    assert_eq!(create["method"], "bdev_lvol_create");
    assert_eq!(
        create["params"],
        json!({"lvol_name": "vol1", "size_in_mib": 64, "thin_provision": false, "lvs_name": "lvs0"})
    );
    assert_eq!(examine["method"], "bdev_wait_for_examine");
    assert!(
        examine.get("params").is_none(),
        "no-param methods must omit params"
    );
    assert_ne!(create["id"], examine["id"]);
}

#[tokio::test]
async fn missing_socket_is_a_transport_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = SpdkClient::unix(dir.path().join("absent.sock"));
    let err = client.spdk_get_version().await.expect_err("no socket");
    assert!(err.is_transport(), "{err:?}");
}

/// Records what a [`spdk_client::CallObserver`] is told.
#[derive(Debug, Default)]
struct Seen(std::sync::Mutex<Vec<(String, Option<String>)>>);

impl spdk_client::CallObserver for Seen {
    fn observe(&self, method: &str, elapsed: Duration, error: Option<&SpdkError>) {
        assert!(elapsed < Duration::from_secs(10));
        let kind = error.map(|e| match e {
            SpdkError::Rpc { code, .. } => format!("rpc {code}"),
            SpdkError::Timeout => "timeout".into(),
            other => other.to_string(),
        });
        self.0.lock().unwrap().push((method.to_string(), kind));
    }
}

#[tokio::test]
async fn an_observer_hears_every_call_with_its_outcome_timeouts_included() {
    let server = FakeServer::new();
    let seen = std::sync::Arc::new(Seen::default());
    let client = server.client().with_observer(seen.clone());
    let serve = async {
        let mut conn = Conn::accept(&server.listener).await;
        let ok = conn.requests(1).await.remove(0);
        conn.write(&answer(&ok, json!(true))).await;
        let failing = conn.requests(1).await.remove(0);
        let error = json!({"jsonrpc": "2.0", "id": failing["id"],
                           "error": {"code": -19, "message": "No such device"}});
        conn.write(&serde_json::to_vec(&error).unwrap()).await;
        let _ignored = conn.requests(1).await;
        conn
    };
    let calls = async {
        client
            .call_raw("bdev_wait_for_examine", None)
            .await
            .expect("ok");
        client
            .call_raw("bdev_lvol_delete", Some(json!({"name": "x"})))
            .await
            .expect_err("-19");
        // A clone with a shorter timeout keeps the observer.
        let quick = client.clone().with_timeout(Duration::from_millis(100));
        quick
            .call_raw("bdev_get_bdevs", None)
            .await
            .expect_err("no answer");
    };
    let (_, _conn) = tokio::join!(calls, serve);
    assert_eq!(
        *seen.0.lock().unwrap(),
        vec![
            ("bdev_wait_for_examine".to_string(), None),
            ("bdev_lvol_delete".to_string(), Some("rpc -19".to_string())),
            ("bdev_get_bdevs".to_string(), Some("timeout".to_string())),
        ]
    );
}
