//! [`SpdkClient`]: ids, timeouts, call counting and typed decoding on top of a
//! [`Transport`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use crate::error::{Result, SpdkError};
use crate::protocol::Request;
use crate::transport::{HttpTransport, Transport, UnixTransport};

/// Per-call timeout used unless [`SpdkClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Told the outcome of every call a client makes (for metrics): the
/// method, how long it took (timeouts included) and the error, if any.
pub trait CallObserver: Send + Sync + std::fmt::Debug {
    /// One call of `method` ended after `elapsed`, failing with `error` when set.
    fn observe(&self, method: &str, elapsed: Duration, error: Option<&SpdkError>);
}

/// Async SPDK JSON-RPC client. Cheap to clone; clones share the connection
/// and the call counters.
#[derive(Debug, Clone)]
pub struct SpdkClient {
    shared: Arc<Shared>,
    timeout: Duration,
    observer: Option<Arc<dyn CallObserver>>,
}

#[derive(Debug)]
struct Shared {
    transport: Box<dyn Transport>,
    next_id: AtomicU64,
    total_calls: AtomicU64,
    calls_by_method: Mutex<BTreeMap<String, u64>>,
}

impl SpdkClient {
    /// Wraps any transport.
    pub fn new(transport: impl Transport + 'static) -> SpdkClient {
        SpdkClient {
            shared: Arc::new(Shared {
                transport: Box::new(transport),
                next_id: AtomicU64::new(1),
                total_calls: AtomicU64::new(0),
                calls_by_method: Mutex::new(BTreeMap::new()),
            }),
            timeout: DEFAULT_TIMEOUT,
            observer: None,
        }
    }

    /// Client for spdk_tgt's RPC socket; connects on the first call.
    pub fn unix(path: impl Into<PathBuf>) -> SpdkClient {
        SpdkClient::new(UnixTransport::new(path))
    }

    /// Client for the node agent's HTTP JSON-RPC endpoint on a loopback address.
    pub fn http(url: &str, token: &str) -> Result<SpdkClient> {
        Ok(SpdkClient::new(HttpTransport::new(url, token)?))
    }

    /// Client for the node agent's JSON-RPC endpoint over HTTPS verified with
    /// `tls` (plain `http://` still only to loopback).
    pub fn https(url: &str, token: &str, tls: &crate::https::ClientTls) -> Result<SpdkClient> {
        Ok(SpdkClient::new(HttpTransport::secure(url, token, tls)?))
    }

    /// Returns this client with a different per-call timeout. The result still
    /// shares the connection and counters with `self`'s clones.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> SpdkClient {
        self.timeout = timeout;
        self
    }

    /// Returns this client with `observer` told of every call it (and its
    /// later clones) makes; it still shares the connection with `self`'s clones.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> SpdkClient {
        self.observer = Some(observer);
        self
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Number of calls issued so far (all clones together).
    pub fn call_count(&self) -> u64 {
        self.shared.total_calls.load(Ordering::Relaxed)
    }

    /// Number of calls issued so far, per method name.
    pub fn calls_by_method(&self) -> BTreeMap<String, u64> {
        self.shared
            .calls_by_method
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Calls `method` with typed params and decodes the typed result.
    pub async fn call<P, R>(&self, method: &str, params: Option<&P>) -> Result<R>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let params = params
            .map(serde_json::to_value)
            .transpose()
            .map_err(|source| SpdkError::Encode {
                method: method.to_owned(),
                source,
            })?;
        let value = self.call_raw(method, params).await?;
        decode(method, value)
    }

    /// Calls `method` with raw JSON params and returns the raw result.
    pub async fn call_raw(&self, method: &str, params: Option<Value>) -> Result<Value> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.count(method);
        let span = tracing::debug_span!("spdk_rpc", method, id);
        let started = std::time::Instant::now();
        async {
            let request = Request::new(id, method, params);
            let outcome = match tokio::time::timeout(
                self.timeout,
                self.shared.transport.send(&request),
            )
            .await
            {
                Ok(sent) => sent.and_then(|response| response.into_result()),
                Err(_) => Err(SpdkError::Timeout),
            };
            match &outcome {
                Ok(_) => tracing::debug!("ok"),
                Err(error) => tracing::debug!(%error, "failed"),
            }
            if let Some(observer) = &self.observer {
                observer.observe(method, started.elapsed(), outcome.as_ref().err());
            }
            outcome
        }
        .instrument(span)
        .await
    }

    /// Calls a method whose typed params struct may be empty: an all-default
    /// struct is sent as no params at all, as SPDK's own scripts do.
    pub(crate) async fn call_opt<P, R>(&self, method: &str, params: &P) -> Result<R>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let value = wire_params(method, params)?;
        decode(method, self.call_raw(method, value).await?)
    }

    /// Calls a method that answers `true` on success.
    pub(crate) async fn call_unit<P>(&self, method: &str, params: Option<&P>) -> Result<()>
    where
        P: Serialize + ?Sized,
    {
        let done: bool = self.call(method, params).await?;
        expect_true(method, done)
    }

    /// Like [`Self::call_unit`] for methods whose params may be empty.
    pub(crate) async fn call_opt_unit<P>(&self, method: &str, params: &P) -> Result<()>
    where
        P: Serialize + ?Sized,
    {
        let done: bool = self.call_opt(method, params).await?;
        expect_true(method, done)
    }

    fn count(&self, method: &str) {
        self.shared.total_calls.fetch_add(1, Ordering::Relaxed);
        let mut by_method = self
            .shared
            .calls_by_method
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *by_method.entry(method.to_owned()).or_insert(0) += 1;
    }
}

/// Serializes params the way they go on the wire: an empty object becomes no
/// params at all.
pub fn wire_params<P: Serialize + ?Sized>(method: &str, params: &P) -> Result<Option<Value>> {
    let value = serde_json::to_value(params).map_err(|source| SpdkError::Encode {
        method: method.to_owned(),
        source,
    })?;
    Ok(match &value {
        Value::Object(map) if map.is_empty() => None,
        Value::Null => None,
        _ => Some(value),
    })
}

fn decode<R: DeserializeOwned>(method: &str, value: Value) -> Result<R> {
    serde_json::from_value(value).map_err(|source| SpdkError::Decode {
        method: method.to_owned(),
        source,
    })
}

fn expect_true(method: &str, done: bool) -> Result<()> {
    if done {
        Ok(())
    } else {
        Err(SpdkError::Protocol(format!("{method} returned false")))
    }
}
