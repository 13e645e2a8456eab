//! One side of the differential test: two storage nodes (A assembles raids,
//! B only serves replicas) of one flavor, and the log of every call a
//! scenario made on them, in order.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spdk_client::{SpdkClient, SpdkError};
use testkit::data_path::DataPath;
use testkit::launch::Role;
use testkit::nodes::{Flavor, TestCluster};

/// The two nodes of a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// Assembles raids (polls on real SPDK).
    A,
    /// Only serves replicas (`nvmf_tgt --interrupt-mode` on real SPDK).
    B,
}

impl Node {
    fn index(self) -> usize {
        match self {
            Node::A => 0,
            Node::B => 1,
        }
    }

    /// The transcript's target letter.
    pub fn letter(self) -> &'static str {
        match self {
            Node::A => "A",
            Node::B => "B",
        }
    }
}

/// One recorded call (or observed fact) and its outcome.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The scenario step it belongs to.
    pub step: String,
    /// Which node answered.
    pub node: Node,
    /// The JSON-RPC method, or `=fact` for a fact the scenario observed.
    pub method: String,
    /// Params as sent (`Null`: none).
    pub params: Value,
    /// Result, or (code, message).
    pub outcome: Result<Value, (i64, String)>,
}

impl Entry {
    /// The transcript line of this entry (the format of `shared/spdk/transcripts`).
    pub fn to_line(&self) -> Value {
        let mut o = json!({"step": self.step, "target": self.node.letter(), "method": self.method});
        if !self.params.is_null() {
            o["params"] = self.params.clone();
        }
        match &self.outcome {
            Ok(v) => o["response"] = v.clone(),
            Err((code, message)) => o["error"] = json!({"code": code, "message": message}),
        }
        o
    }

    /// An entry from a transcript line.
    pub fn from_line(line: &Value) -> Entry {
        let node = if line["target"] == "B" {
            Node::B
        } else {
            Node::A
        };
        let outcome = match (line.get("response"), line.get("error")) {
            (Some(r), _) => Ok(r.clone()),
            (None, Some(e)) => Err((
                e["code"].as_i64().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )),
            _ => Ok(Value::Null),
        };
        Entry {
            step: line["step"].as_str().unwrap_or_default().to_string(),
            node,
            method: line["method"].as_str().unwrap_or_default().to_string(),
            params: line.get("params").cloned().unwrap_or(Value::Null),
            outcome,
        }
    }
}

/// Two nodes of one flavor and what a scenario did on them.
pub struct Side {
    /// `"sim"` or `"real"`.
    pub kind: &'static str,
    /// The nodes.
    pub cluster: TestCluster,
    /// Every call, in order.
    pub log: Vec<Entry>,
    step: String,
}

/// What an RPC answered: the result, or (code, message).
pub type Answer = Result<Value, (i64, String)>;

fn answer(r: Result<Value, SpdkError>) -> Answer {
    match r {
        Ok(v) => Ok(v),
        Err(SpdkError::Rpc { code, message, .. }) => Err((i64::from(code), message)),
        Err(e) => Err((0, format!("transport: {e}"))),
    }
}

impl Side {
    /// Starts A and B of `flavor`.
    pub async fn start(flavor: Flavor) -> Side {
        let kind = if flavor.is_real() { "real" } else { "sim" };
        let cluster = tokio::task::spawn_blocking(move || {
            TestCluster::start_with(flavor, &[Role::Engine, Role::Replica])
        })
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("starting the {kind} nodes: {e}"));
        Side {
            kind,
            cluster,
            log: Vec::new(),
            step: String::new(),
        }
    }

    fn client(&self, node: Node) -> SpdkClient {
        SpdkClient::unix(&self.cluster.node(node.index()).rpc_socket)
            .with_timeout(Duration::from_secs(60))
    }

    /// Names the step the next calls belong to.
    pub fn step(&mut self, label: &str) {
        self.step = label.to_string();
    }

    /// Calls `method` on `node` and records it.
    pub async fn call(&mut self, node: Node, method: &str, params: Value) {
        let _ = self.get(node, method, params).await;
    }

    /// Calls `method` on `node`, records it and returns the answer.
    pub async fn get(&mut self, node: Node, method: &str, params: Value) -> Answer {
        let out = self.quiet(node, method, params.clone()).await;
        self.log.push(Entry {
            step: self.step.clone(),
            node,
            method: method.to_string(),
            params,
            outcome: out.clone(),
        });
        out
    }

    /// Calls what should succeed and returns the result (`Null` on failure,
    /// which is recorded and reported by the comparison; the scenario goes on
    /// so the real side is still recorded in full).
    pub async fn ok(&mut self, node: Node, method: &str, params: Value) -> Value {
        match self.get(node, method, params.clone()).await {
            Ok(v) => v,
            Err(e) => {
                eprintln!("{}: {method} {params} on {node:?} failed: {e:?}", self.kind);
                Value::Null
            }
        }
    }

    /// Calls without recording (polling, cleanup).
    pub async fn quiet(&self, node: Node, method: &str, params: Value) -> Answer {
        let p = if params.is_null() { None } else { Some(params) };
        answer(self.client(node).call_raw(method, p).await)
    }

    /// Records a fact the scenario observed (not an RPC answer).
    pub fn fact(&mut self, node: Node, what: &str, value: Value) {
        self.log.push(Entry {
            step: self.step.clone(),
            node,
            method: format!("={what}"),
            params: Value::Null,
            outcome: Ok(value),
        });
    }

    /// Polls `method` quietly until `done` holds (or `timeout` passes), then
    /// records the last answer. Timing is the one thing the sim does not
    /// reproduce, so only the settled state is compared.
    pub async fn settle(
        &mut self,
        node: Node,
        method: &str,
        params: Value,
        timeout: Duration,
        done: impl Fn(&Answer) -> bool,
    ) -> Answer {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.quiet(node, method, params.clone()).await;
            if done(&out) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.get(node, method, params).await
    }

    /// The aio backing file of `node`.
    pub fn aio(&self, node: Node) -> String {
        self.cluster
            .node(node.index())
            .aio_file
            .display()
            .to_string()
    }

    /// The NVMe-oF port reserved for `node`.
    pub fn port(&self, node: Node) -> u16 {
        self.cluster.node(node.index()).nvmf_port
    }

    /// The node handle.
    pub fn node(&self, node: Node) -> &testkit::nodes::StorageNode {
        self.cluster.node(node.index())
    }

    /// The data path of this side.
    pub fn data(&self) -> DataPath {
        self.cluster.data_path()
    }

    /// `kill -9` of `node`, then a start on the same files and socket.
    pub fn crash_and_restart(&mut self, node: Node) {
        let i = node.index();
        tokio::task::block_in_place(|| self.cluster.restart_node(i))
            .unwrap_or_else(|e| panic!("restarting {node:?} on {}: {e}", self.kind));
        self.fact(node, "restarted", json!(true));
    }

    /// Strings of this side that differ between sides (paths, ports), with
    /// the token that replaces them in comparisons and recordings.
    pub fn tokens(&self) -> Vec<(String, String)> {
        let mut t = Vec::new();
        for n in [Node::A, Node::B] {
            t.push((self.aio(n), format!("<aio:{}>", n.letter())));
            t.push((self.port(n).to_string(), format!("<port:{}>", n.letter())));
            let dir: PathBuf = self.node(n).data_dir.clone();
            t.push((dir.display().to_string(), format!("<dir:{}>", n.letter())));
        }
        t
    }
}
