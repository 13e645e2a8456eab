//! The ANA fence held by the publishing node's agent as a lease
//! (`POST /fence/ana/*`): the agent restores the optimized path by itself
//! when the lease runs out, so the deadline holds even if this controller
//! dies inside the fence.

use std::time::Duration;

use agent_api::ana_fence::FenceListener;
use agent_api::client::AgentClient;
use agent_api::{AnaFenceResumeRequest, AnaFenceSuspendRequest};

use super::Resumed;
use crate::error::Result;

/// One volume's ANA fence, through the agent of its publishing node.
#[derive(Debug)]
pub struct AgentAnaLease {
    agent: AgentClient,
    node: String,
    nqn: String,
    listener: FenceListener,
}

impl AgentAnaLease {
    /// The fence of subsystem `nqn` on `listener`, held by `agent` (of `node`).
    pub fn new(agent: AgentClient, node: &str, nqn: String, listener: FenceListener) -> Self {
        Self {
            agent,
            node: node.to_string(),
            nqn,
            listener,
        }
    }

    /// Asks the agent for a lease of `deadline`; returns once I/O is drained.
    pub async fn suspend(&self, deadline: Duration) -> Result<()> {
        let request = AnaFenceSuspendRequest {
            nqn: self.nqn.clone(),
            listener: self.listener.clone(),
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        };
        let answer = self.agent.ana_fence_suspend(&request).await?;
        tracing::debug!(node = %self.node, expires_in_ms = answer.expires_in_ms, "ANA fence lease taken by the node agent");
        Ok(())
    }

    /// Ends the lease; says whether it had already run out.
    pub async fn resume(&self) -> Result<Resumed> {
        let request = AnaFenceResumeRequest {
            nqn: self.nqn.clone(),
            listener: self.listener.clone(),
        };
        let answer = self.agent.ana_fence_resume(&request).await?;
        Ok(Resumed {
            lease_expired: answer.expired,
        })
    }
}
