//! The ANA fence of an NVMe/TCP-published volume.
//!
//! On the publishing node, the kernel reaches the volume's raid1 through the
//! loopback listener of the volume subsystem (created with ANA reporting).
//! Suspend: set that listener ANA-inaccessible (the host stops sending and
//! retries queued I/O until the path comes back), then re-set namespace 1's
//! ANA group, which SPDK completes only once the namespace's in-flight I/O
//! has drained. Resume: set the listener optimized.
//!
//! Who holds the fence decides whether its deadline survives the controller:
//! - [`ana_agent`](super::ana_agent): the node agent on the publishing node,
//!   as a lease that restores optimized by itself when it runs out, even if
//!   the controller died. Used whenever the node has an agent.
//! - [`ana_guard`](super::ana_guard): a guard task in this controller that
//!   restores optimized at the deadline. Used for nodes reached through a
//!   local SPDK socket (tests, local mode), where no agent exists; it dies
//!   with the controller, whose startup recovery then lifts the fence.

use std::sync::Arc;
use std::time::Duration;

use agent_api::ana_fence::FenceListener;
use async_trait::async_trait;

use super::ana_agent::AgentAnaLease;
use super::ana_guard::GuardedAna;
use super::{Fence, FenceKind, Resumed};
use crate::error::Result;
use crate::naming;
use crate::nodes::NodeHandle;

/// Fences the frontend subsystem of one volume on its publishing node.
#[derive(Debug)]
pub struct AnaFence {
    holder: Holder,
}

#[derive(Debug)]
enum Holder {
    // Boxed: an AgentClient is large, and fences are few and short-lived.
    Agent(Box<AgentAnaLease>),
    Guard(GuardedAna),
}

impl AnaFence {
    /// The fence of `volume_id`'s frontend subsystem on `node`: held by the
    /// node's agent when it has one, by a guard task here otherwise.
    pub fn new(node: Arc<NodeHandle>, volume_id: &str) -> Self {
        // Matches the listener ControllerPublishVolume creates.
        let listener = FenceListener::loopback(node.config.nvmf_port);
        let nqn = naming::volume_nqn(volume_id);
        let holder = match &node.agent {
            Some(agent) => Holder::Agent(Box::new(AgentAnaLease::new(
                agent.clone(),
                node.name(),
                nqn,
                listener,
            ))),
            None => Holder::Guard(GuardedAna::new(node, nqn, listener)),
        };
        Self { holder }
    }

    /// Whether the node agent holds this fence (as a lease that outlives
    /// the controller).
    pub fn is_agent_lease(&self) -> bool {
        matches!(self.holder, Holder::Agent(_))
    }
}

#[async_trait]
impl Fence for AnaFence {
    fn kind(&self) -> FenceKind {
        FenceKind::Ana
    }

    async fn suspend(&self, deadline: Duration) -> Result<()> {
        match &self.holder {
            Holder::Agent(a) => a.suspend(deadline).await,
            Holder::Guard(g) => g.suspend(deadline).await,
        }
    }

    async fn resume(&self) -> Result<Resumed> {
        match &self.holder {
            Holder::Agent(a) => a.resume().await,
            Holder::Guard(g) => g.resume().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_accepts_the_nqn_and_listener_publish_creates() {
        let id = naming::new_volume_id();
        assert_eq!(
            agent_api::ana_fence::check_volume_nqn(&naming::volume_nqn(&id)),
            Ok(())
        );
        assert_eq!(FenceListener::loopback(4420).check(), Ok(()));
    }
}
