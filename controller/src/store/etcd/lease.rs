//! etcd leases and the leader key, through the JSON gateway
//! (`/v3/lease/grant`, `/v3/lease/keepalive`, `/v3/lease/revoke`,
//! `/v3/kv/txn`): the primitives the controller's leader elector is built on.
//!
//! The leader key (`leader` under the store prefix) holds the leader's
//! identity and is attached to its lease, so it disappears when the lease
//! expires or is revoked. It is created only when absent
//! (`create_revision == 0`); its create revision then names the term, and
//! every write of that leader is conditional on it (see [`super::fence`]).

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::{de_i64, EtcdStore, RangeResponse, Retry, TxnResponse, B64};
use crate::store::{keys, Result, StoreError};

/// A lease etcd granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Lease id.
    pub id: i64,
    /// Time to live etcd granted (at least etcd's minimum, 2 s by default).
    pub ttl: Duration,
}

/// The leader key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRecord {
    /// The leader's identity.
    pub holder: String,
    /// The lease the key is attached to.
    pub lease: i64,
    /// The key's create revision: the leader's term.
    pub revision: u64,
}

/// Outcome of [`EtcdStore::claim_leadership`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This controller created the leader key at `revision`.
    Won {
        /// Create revision of the leader key.
        revision: u64,
    },
    /// Someone holds it (`None` if it vanished again in between).
    Held(Option<LeaderRecord>),
}

#[derive(Debug, Default, Deserialize)]
struct GrantResponse {
    #[serde(rename = "ID", default, deserialize_with = "de_i64")]
    id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "de_i64")]
    ttl: i64,
    #[serde(default)]
    error: String,
}

#[derive(Debug, Default, Deserialize)]
struct KeepAliveResult {
    #[serde(rename = "TTL", default, deserialize_with = "de_i64")]
    ttl: i64,
}

/// One message of the keepalive stream, as the gateway frames it.
#[derive(Debug, Default, Deserialize)]
struct KeepAliveMessage {
    result: Option<KeepAliveResult>,
    error: Option<serde_json::Value>,
}

impl EtcdStore {
    fn leader_key_b64(&self) -> String {
        B64.encode(self.full_key(keys::LEADER))
    }

    /// Grants a lease of `ttl` (whole seconds, rounded up).
    pub async fn grant_lease(&self, ttl: Duration) -> Result<Lease> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let body = json!({ "TTL": secs.to_string(), "ID": "0" });
        // A grant whose answer was lost leaves a lease that just expires.
        let response: GrantResponse = self
            .call("/v3/lease/grant", &body, Retry::ConnectOnly)
            .await?;
        if !response.error.is_empty() || response.id == 0 {
            return Err(StoreError::Backend(format!(
                "etcd refused a lease of {secs} s: {}",
                response.error
            )));
        }
        Ok(Lease {
            id: response.id,
            ttl: Duration::from_secs(u64::try_from(response.ttl).unwrap_or(0)),
        })
    }

    /// Renews `lease`; its remaining time to live, or `None` when etcd no
    /// longer has it (expired or revoked).
    pub async fn keep_alive(&self, lease: i64) -> Result<Option<Duration>> {
        let body = json!({ "ID": lease.to_string() });
        let message: KeepAliveMessage = self
            .call("/v3/lease/keepalive", &body, Retry::Always)
            .await?;
        if let Some(error) = message.error {
            return Err(StoreError::Backend(format!(
                "etcd lease keepalive failed: {error}"
            )));
        }
        let ttl = message.result.map(|r| r.ttl).unwrap_or(0);
        Ok((ttl > 0).then(|| Duration::from_secs(ttl.unsigned_abs())))
    }

    /// Revokes `lease`, deleting the keys attached to it (the leader key, if
    /// this controller holds it). A lease etcd no longer has is not an error.
    pub async fn revoke_lease(&self, lease: i64) -> Result<()> {
        let body = json!({ "ID": lease.to_string() });
        match self
            .call::<serde_json::Value>("/v3/lease/revoke", &body, Retry::Always)
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::Backend(message)) if message.contains("lease not found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The leader key, if anyone holds it.
    pub async fn leader(&self) -> Result<Option<LeaderRecord>> {
        let body = json!({ "key": self.leader_key_b64() });
        let response: RangeResponse = self.call("/v3/kv/range", &body, Retry::Always).await?;
        self.leader_record(&response)
    }

    pub(super) fn leader_record(&self, range: &RangeResponse) -> Result<Option<LeaderRecord>> {
        let Some(kv) = range.kvs.first() else {
            return Ok(None);
        };
        let raw = B64
            .decode(&kv.value)
            .map_err(|err| super::corrupt(keys::LEADER, err))?;
        Ok(Some(LeaderRecord {
            holder: String::from_utf8_lossy(&raw).into_owned(),
            lease: kv.lease,
            revision: kv.create_revision,
        }))
    }

    /// Creates the leader key as `holder`, attached to `lease`, if nobody
    /// holds it. Not subject to the write fence (it is how the fence is won).
    pub async fn claim_leadership(&self, holder: &str, lease: i64) -> Result<Claim> {
        let key = self.leader_key_b64();
        let body = json!({
            "compare": [{ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": {
                "key": key, "value": B64.encode(holder), "lease": lease.to_string()
            } }],
            "failure": [{ "request_range": { "key": key } }],
        });
        let response: TxnResponse = self.call("/v3/kv/txn", &body, Retry::ConnectOnly).await?;
        if response.succeeded {
            return Ok(Claim::Won {
                revision: response.header.revision,
            });
        }
        let range = response
            .responses
            .first()
            .and_then(|r| r.response_range.as_ref());
        match range {
            Some(range) => Ok(Claim::Held(self.leader_record(range)?)),
            None => Ok(Claim::Held(None)),
        }
    }
}
