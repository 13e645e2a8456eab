//! The node-quiesce fence of a ublk-published volume: the node agent freezes
//! the volume's filesystem (or suspends its dm device) under a lease, so a
//! controller that disappears mid-snapshot cannot leave the pod stuck.

use std::sync::Arc;
use std::time::Duration;

use agent_api::client::AgentClient;
use agent_api::{ResumeRequest, SuspendRequest};
use async_trait::async_trait;

use super::{Fence, FenceKind, Resumed};
use crate::error::Result;
use crate::nodes::NodeHandle;

/// Suspends and resumes a volume's I/O on the node that uses it.
#[async_trait]
pub trait NodeQuiesce: Send + Sync + std::fmt::Debug {
    /// Freezes `volume_id`'s I/O for at most `deadline`.
    async fn suspend(&self, volume_id: &str, deadline: Duration) -> Result<()>;
    /// Thaws `volume_id`'s I/O and says whether the hold was still in
    /// force (see [`Resumed`]). Idempotent.
    async fn resume(&self, volume_id: &str) -> Result<Resumed>;
}

/// The node agent's `POST /quiesce/suspend` and `/quiesce/resume`.
#[derive(Debug, Clone)]
pub struct AgentQuiesce {
    agent: AgentClient,
}

impl AgentQuiesce {
    /// The agent of `node`, or `None` when the node is reached through a
    /// local SPDK socket (no agent).
    pub fn for_node(node: &NodeHandle) -> Option<Self> {
        node.agent.clone().map(|agent| Self { agent })
    }
}

#[async_trait]
impl NodeQuiesce for AgentQuiesce {
    async fn suspend(&self, volume_id: &str, deadline: Duration) -> Result<()> {
        let request = SuspendRequest {
            volume_id: volume_id.to_string(),
            target: None,
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        };
        self.agent.suspend(&request).await?;
        Ok(())
    }

    async fn resume(&self, volume_id: &str) -> Result<Resumed> {
        let request = ResumeRequest {
            volume_id: volume_id.to_string(),
        };
        let answer = self.agent.resume(&request).await?;
        Ok(Resumed {
            lease_expired: answer.expired,
        })
    }
}

/// Fences one volume through a [`NodeQuiesce`].
#[derive(Debug)]
pub struct NodeQuiesceFence {
    quiesce: Arc<dyn NodeQuiesce>,
    volume_id: String,
    node: String,
}

impl NodeQuiesceFence {
    /// The fence of `volume_id` published on `node`.
    pub fn new(quiesce: Arc<dyn NodeQuiesce>, volume_id: &str, node: &str) -> Self {
        Self {
            quiesce,
            volume_id: volume_id.to_string(),
            node: node.to_string(),
        }
    }
}

#[async_trait]
impl Fence for NodeQuiesceFence {
    fn kind(&self) -> FenceKind {
        FenceKind::NodeQuiesce
    }

    async fn suspend(&self, deadline: Duration) -> Result<()> {
        tracing::debug!(node = %self.node, "quiescing volume I/O on its node");
        self.quiesce.suspend(&self.volume_id, deadline).await
    }

    async fn resume(&self) -> Result<Resumed> {
        self.quiesce.resume(&self.volume_id).await
    }
}
