//! etcd v3 backend over etcd's JSON gRPC gateway (`/v3/kv/*`, etcd >= 3.4).
//!
//! The gateway avoids a build-time `protoc` dependency. Keys live under a
//! configurable prefix; keys and values travel base64-encoded. Expectations
//! map to etcd compares: `Absent` is `create_revision == 0`, `Revision(r)` is
//! `mod_revision == r`.
//!
//! [`lease`] adds etcd leases and the leader key; [`fence`] makes every write
//! of a controller running a leader elector conditional on still holding it.

mod fence;
mod lease;

pub use fence::LeaderFence;
pub use lease::{Claim, LeaderRecord, Lease};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{json, Value};

use self::fence::WriteCondition;
use super::{
    expectation_holds, keys, validate_key, validate_txn, Entry, Expect, KvStore, Result, Revision,
    StoreError, TxnOp,
};

/// Connection settings for [`EtcdStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs (`http://host:port`), tried in order on connection errors.
    pub endpoints: Vec<String>,
    /// Prefix prepended to every key.
    pub prefix: String,
    /// Deadline for one request, including reading the response.
    pub request_timeout: Duration,
    /// Deadline for establishing a TCP connection.
    pub connect_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/shorthorn/".into(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// [`KvStore`] backed by an etcd v3 cluster.
#[derive(Debug, Clone)]
pub struct EtcdStore {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoints: Arc<Vec<String>>,
    /// Index of the endpoint that last answered.
    current: Arc<AtomicUsize>,
    prefix: Arc<str>,
    request_timeout: Duration,
    /// Which writes the leader elector allows (open when none runs).
    fence: Arc<LeaderFence>,
}

/// Whether a failed request may be retried on another endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: retry on any transport failure.
    Always,
    /// Writes: retry only when the request surely never left (connect error).
    ConnectOnly,
}

impl EtcdStore {
    /// Builds a client; no connection is made until the first request.
    pub fn new(config: EtcdConfig) -> Result<Self> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoints configured".into()));
        }
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            let trimmed = endpoint.trim_end_matches('/');
            let uri: http::Uri = trimmed
                .parse()
                .map_err(|err| StoreError::Invalid(format!("etcd endpoint {endpoint}: {err}")))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(StoreError::Invalid(format!(
                    "etcd endpoint {endpoint}: only http://host:port is supported"
                )));
            }
            endpoints.push(trimmed.to_string());
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(EtcdStore {
            client,
            endpoints: Arc::new(endpoints),
            current: Arc::new(AtomicUsize::new(0)),
            prefix: config.prefix.into(),
            request_timeout: config.request_timeout,
            fence: Arc::default(),
        })
    }

    /// The write fence shared by every clone of this store. Open (writes
    /// unconditional) until a leader elector closes or holds it.
    pub fn fence(&self) -> &LeaderFence {
        &self.fence
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.prefix).into_bytes()
    }

    fn strip(&self, raw: &str) -> Result<String> {
        let bytes = B64.decode(raw).map_err(|err| corrupt(raw, err))?;
        let full = String::from_utf8(bytes).map_err(|err| corrupt(raw, err))?;
        full.strip_prefix(&*self.prefix)
            .map(str::to_string)
            .ok_or_else(|| corrupt(&full, "key outside the configured prefix"))
    }

    /// POSTs `body` to `path`, failing over between endpoints.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &Value,
        retry: Retry,
    ) -> Result<T> {
        let payload = Bytes::from(body.to_string());
        let count = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for attempt in 0..count {
            let index = (start + attempt) % count;
            let endpoint = &self.endpoints[index];
            match self.call_one(endpoint, path, payload.clone()).await {
                Ok(raw) => {
                    if index != start {
                        tracing::info!(%endpoint, "etcd failed over");
                        self.current.store(index, Ordering::Relaxed);
                    }
                    return serde_json::from_slice(&raw).map_err(|err| {
                        StoreError::Backend(format!("{endpoint}{path}: bad response: {err}"))
                    });
                }
                Err(CallError::Store(err)) => return Err(err),
                Err(CallError::Transport { connect, error }) => {
                    tracing::warn!(%endpoint, %error, "etcd request failed");
                    last_error = Some(error);
                    if !(connect || retry == Retry::Always) {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| StoreError::Invalid("no etcd endpoints".into())))
    }

    async fn call_one(
        &self,
        endpoint: &str,
        path: &str,
        payload: Bytes,
    ) -> std::result::Result<Bytes, CallError> {
        let unavailable = |connect: bool, reason: String| CallError::Transport {
            connect,
            error: StoreError::Unavailable {
                endpoint: endpoint.to_string(),
                reason,
            },
        };
        let request = http::Request::post(format!("{endpoint}{path}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(payload))
            .map_err(|err| CallError::Store(StoreError::Invalid(err.to_string())))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| unavailable(err.is_connect(), err.to_string()))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|err| unavailable(false, err.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| {
                unavailable(
                    false,
                    format!("no answer within {:?}", self.request_timeout),
                )
            })??;
        if status.is_success() {
            return Ok(body);
        }
        Err(gateway_error(endpoint, status, &body))
    }

    /// Runs one etcd txn built from `ops`, conditional on the write fence;
    /// returns the response of a txn that applied.
    async fn etcd_txn(&self, ops: &[TxnOp]) -> Result<TxnResponse> {
        let condition = self.fence.admit()?;
        let mut compare = Vec::new();
        let mut failure = Vec::new();
        let mut success = Vec::with_capacity(ops.len());
        for op in ops {
            let key = B64.encode(self.full_key(op.key()));
            match op.expect() {
                Expect::Any => {}
                Expect::Absent => compare.push(json!({
                    "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"
                })),
                Expect::Revision(Revision(r)) => compare.push(json!({
                    "key": key, "target": "MOD", "result": "EQUAL", "mod_revision": r.to_string()
                })),
            }
            if op.expect() != Expect::Any {
                failure.push(json!({ "request_range": { "key": key, "keys_only": true } }));
            }
            success.push(match op {
                TxnOp::Put { value, .. } => {
                    json!({ "request_put": { "key": key, "value": B64.encode(value) } })
                }
                TxnOp::Delete { .. } => json!({ "request_delete_range": { "key": key } }),
            });
        }
        if let WriteCondition::LeaderKey { revision } = condition {
            // Last, so the failure ranges of the ops keep their positions.
            let key = B64.encode(self.full_key(keys::LEADER));
            compare.push(json!({
                "key": key, "target": "CREATE", "result": "EQUAL",
                "create_revision": revision.to_string()
            }));
            failure.push(json!({ "request_range": { "key": key } }));
        }
        let body = json!({ "compare": compare, "success": success, "failure": failure });
        let response: TxnResponse = self.call("/v3/kv/txn", &body, Retry::ConnectOnly).await?;
        if response.succeeded {
            return Ok(response);
        }
        if let WriteCondition::LeaderKey { revision } = condition {
            if let Some(lost) = self.leadership_lost(&response, revision)? {
                return Err(lost);
            }
        }
        Err(self.conflict_from_failure(ops, &response))
    }

    /// `NotLeader` when the failure branch shows the leader key created at
    /// `revision` is gone or someone else's (and closes the fence).
    fn leadership_lost(&self, response: &TxnResponse, revision: u64) -> Result<Option<StoreError>> {
        let range = response
            .responses
            .last()
            .and_then(|r| r.response_range.as_ref());
        let current = match range {
            Some(range) => self.leader_record(range)?,
            None => None,
        };
        let why = match current {
            Some(record) if record.revision == revision => return Ok(None),
            Some(record) => format!("controller {} took over", record.holder),
            None => "its etcd lease expired or was revoked".to_string(),
        };
        let reason = format!("this controller lost leadership: {why}");
        tracing::warn!(%reason, "etcd refused a write: not the leader any more");
        self.fence.deposed(revision, &reason);
        Ok(Some(StoreError::NotLeader { reason }))
    }

    /// Finds which expectation failed from the failure branch's ranges.
    fn conflict_from_failure(&self, ops: &[TxnOp], response: &TxnResponse) -> StoreError {
        let checked = ops.iter().filter(|op| op.expect() != Expect::Any);
        for (op, answer) in checked.zip(&response.responses) {
            let current = answer
                .response_range
                .as_ref()
                .and_then(|range| range.kvs.first())
                .map(|kv| Revision(kv.mod_revision));
            if !expectation_holds(op.expect(), current) {
                return StoreError::Conflict {
                    key: op.key().to_string(),
                };
            }
        }
        // The failing key changed again between compare and range; name the first checked key.
        let key = ops
            .iter()
            .find(|op| op.expect() != Expect::Any)
            .map(|op| op.key().to_string())
            .unwrap_or_default();
        StoreError::Conflict { key }
    }
}

/// Outcome of one attempt against one endpoint.
enum CallError {
    /// Final: do not try another endpoint.
    Store(StoreError),
    /// Transport failure; `connect` is true when the request was never sent.
    Transport { connect: bool, error: StoreError },
}

fn corrupt(key: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// gRPC status codes etcd uses for "try again later".
const GRPC_DEADLINE_EXCEEDED: i64 = 4;
const GRPC_UNAVAILABLE: i64 = 14;

/// Maps a non-2xx gateway answer to an error.
fn gateway_error(endpoint: &str, status: http::StatusCode, body: &[u8]) -> CallError {
    #[derive(Deserialize)]
    struct GatewayError {
        #[serde(default)]
        code: i64,
        #[serde(default)]
        message: String,
    }
    let parsed: Option<GatewayError> = serde_json::from_slice(body).ok();
    let (code, message) = parsed
        .map(|e| (e.code, e.message))
        .unwrap_or_else(|| (0, String::from_utf8_lossy(body).into_owned()));
    let reason = format!("HTTP {status}: {message}");
    if status == http::StatusCode::SERVICE_UNAVAILABLE
        || code == GRPC_UNAVAILABLE
        || code == GRPC_DEADLINE_EXCEEDED
    {
        CallError::Transport {
            connect: false,
            error: StoreError::Unavailable {
                endpoint: endpoint.to_string(),
                reason,
            },
        }
    } else {
        CallError::Store(StoreError::Backend(format!("{endpoint}: {reason}")))
    }
}

/// Smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Empty (or all-0xff) prefix: "\0" means "to the end of the keyspace".
    vec![0]
}

/// etcd encodes int64 fields as JSON strings; accept numbers too.
fn de_i64<'de, D: serde::Deserializer<'de>>(de: D) -> std::result::Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Text(String),
        Int(i64),
    }
    match Num::deserialize(de)? {
        Num::Int(n) => Ok(n),
        Num::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// etcd encodes int64 fields as JSON strings; accept numbers too.
fn de_u64<'de, D: serde::Deserializer<'de>>(de: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Text(String),
        Int(u64),
    }
    match Num::deserialize(de)? {
        Num::Int(n) => Ok(n),
        Num::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Default, Deserialize)]
struct Header {
    #[serde(default, deserialize_with = "de_u64")]
    revision: u64,
}

#[derive(Debug, Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "de_u64")]
    mod_revision: u64,
    #[serde(default, deserialize_with = "de_u64")]
    create_revision: u64,
    #[serde(default, deserialize_with = "de_i64")]
    lease: i64,
}

#[derive(Debug, Default, Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Debug, Default, Deserialize)]
struct DeleteResponse {
    #[serde(default, deserialize_with = "de_u64")]
    deleted: u64,
}

#[derive(Debug, Default, Deserialize)]
struct ResponseOp {
    response_range: Option<RangeResponse>,
    response_delete_range: Option<DeleteResponse>,
}

#[derive(Debug, Default, Deserialize)]
struct TxnResponse {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<ResponseOp>,
}

#[async_trait]
impl KvStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Revision)>> {
        validate_key(key)?;
        let body = json!({ "key": B64.encode(self.full_key(key)) });
        let response: RangeResponse = self.call("/v3/kv/range", &body, Retry::Always).await?;
        match response.kvs.into_iter().next() {
            Some(kv) => {
                let value = B64.decode(&kv.value).map_err(|err| corrupt(key, err))?;
                Ok(Some((value, Revision(kv.mod_revision))))
            }
            None => Ok(None),
        }
    }

    async fn list_from(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Entry>> {
        // etcd reads a limit of 0 as "unlimited"; the trait means "nothing".
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        let full_prefix = self.full_key(prefix);
        let start = match start_after {
            Some(after) if after >= prefix => {
                let mut key = self.full_key(after);
                key.push(0);
                key
            }
            _ => full_prefix.clone(),
        };
        let mut body = json!({
            "key": B64.encode(start),
            "range_end": B64.encode(prefix_end(&full_prefix)),
            "sort_order": "ASCEND",
            "sort_target": "KEY",
        });
        if let Some(limit) = limit {
            body["limit"] = json!(limit.to_string());
        }
        let response: RangeResponse = self.call("/v3/kv/range", &body, Retry::Always).await?;
        response
            .kvs
            .into_iter()
            .map(|kv| {
                let key = self.strip(&kv.key)?;
                let value = B64.decode(&kv.value).map_err(|err| corrupt(&key, err))?;
                Ok((key, value, Revision(kv.mod_revision)))
            })
            .collect()
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<bool> {
        let op = TxnOp::Delete {
            key: key.to_string(),
            expect,
        };
        validate_txn(std::slice::from_ref(&op))?;
        let response = self.etcd_txn(std::slice::from_ref(&op)).await?;
        let deleted = response
            .responses
            .first()
            .and_then(|r| r.response_delete_range.as_ref())
            .map(|d| d.deleted > 0)
            .unwrap_or(false);
        Ok(deleted)
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Revision> {
        validate_txn(&ops)?;
        let response = self.etcd_txn(&ops).await?;
        Ok(Revision(response.header.revision))
    }

    async fn health(&self) -> Result<()> {
        let full_prefix = self.full_key("");
        let body = json!({
            "key": B64.encode(&full_prefix),
            "range_end": B64.encode(prefix_end(&full_prefix)),
            "limit": "1",
            "keys_only": true,
        });
        let _: RangeResponse = self.call("/v3/kv/range", &body, Retry::Always).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_covers_exactly_the_prefix() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn https_endpoints_are_rejected_up_front() {
        let config = EtcdConfig {
            endpoints: vec!["https://etcd:2379".into()],
            ..EtcdConfig::default()
        };
        assert!(matches!(
            EtcdStore::new(config),
            Err(StoreError::Invalid(_))
        ));
    }
}
