//! The ANA fence held by this controller: a guard task started with the
//! suspend restores optimized at the deadline (retrying until the node
//! answers) even if the snapshot calls, or the drain itself, hang. For nodes
//! without an agent; the guard dies with the controller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agent_api::ana_fence::{FenceListener, VOLUME_ANA_GROUP, VOLUME_NSID};
use spdk_client::{
    AnaState, ListenAddress, NvmfSubsystemListenerSetAnaStateParams,
    NvmfSubsystemSetNsAnaGroupParams,
};
use tokio::task::JoinHandle;

use super::Resumed;
use crate::error::Result;
use crate::nodes::NodeHandle;

/// Pause between the guard's attempts once the deadline passed.
const GUARD_RETRY: Duration = Duration::from_millis(250);

/// One volume's ANA fence, held by a guard task of this controller.
#[derive(Debug)]
pub struct GuardedAna {
    node: Arc<NodeHandle>,
    nqn: String,
    listener: ListenAddress,
    guard: Mutex<Option<Guard>>,
}

#[derive(Debug)]
struct Guard {
    task: JoinHandle<()>,
    /// Set once the deadline passed: the fence no longer holds by right.
    fired: Arc<AtomicBool>,
}

impl GuardedAna {
    /// The fence of subsystem `nqn` on `listener` of `node`.
    pub fn new(node: Arc<NodeHandle>, nqn: String, listener: FenceListener) -> Self {
        Self {
            node,
            nqn,
            listener: ListenAddress {
                trtype: listener.trtype,
                adrfam: Some(listener.adrfam),
                traddr: listener.traddr,
                trsvcid: Some(listener.trsvcid),
            },
            guard: Mutex::new(None),
        }
    }

    async fn set_state(
        node: &NodeHandle,
        nqn: &str,
        listener: &ListenAddress,
        state: AnaState,
    ) -> Result<()> {
        let params = NvmfSubsystemListenerSetAnaStateParams {
            nqn: nqn.to_string(),
            listen_address: listener.clone(),
            ana_state: state,
            anagrpid: None,
            tgt_name: None,
        };
        node.client
            .nvmf_subsystem_listener_set_ana_state(&params)
            .await
            .map_err(|e| {
                node.call_failed("nvmf_subsystem_listener_set_ana_state", e)
                    .into()
            })
    }

    /// Starts the guard, sets the listener inaccessible and drains.
    pub async fn suspend(&self, deadline: Duration) -> Result<()> {
        let fired = Arc::new(AtomicBool::new(false));
        let (node, nqn, listener) = (self.node.clone(), self.nqn.clone(), self.listener.clone());
        let task = tokio::spawn({
            let fired = fired.clone();
            async move {
                tokio::time::sleep(deadline).await;
                fired.store(true, Ordering::SeqCst);
                tracing::warn!(nqn = %nqn, ?deadline, "ANA fence deadline passed; restoring the optimized path");
                // Retry until the node answers: a path left inaccessible stalls the pod.
                while let Err(e) =
                    Self::set_state(&node, &nqn, &listener, AnaState::Optimized).await
                {
                    tracing::error!(nqn = %nqn, error = %e, "restoring the optimized ANA state failed; retrying");
                    tokio::time::sleep(GUARD_RETRY).await;
                }
            }
        });
        if let Some(old) = self
            .guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(Guard { task, fired })
        {
            old.task.abort();
        }
        Self::set_state(
            &self.node,
            &self.nqn,
            &self.listener,
            AnaState::Inaccessible,
        )
        .await?;
        // Drain barrier: completes once the namespace's in-flight I/O is done.
        let params = NvmfSubsystemSetNsAnaGroupParams {
            nqn: self.nqn.clone(),
            nsid: VOLUME_NSID,
            anagrpid: VOLUME_ANA_GROUP,
            tgt_name: None,
        };
        self.node
            .client
            .nvmf_subsystem_set_ns_ana_group(&params)
            .await
            .map_err(|e| {
                self.node
                    .call_failed("nvmf_subsystem_set_ns_ana_group", e)
                    .into()
            })
    }

    /// Sets the listener optimized; on success stops the guard. Says
    /// whether the guard had already fired (or none was running).
    pub async fn resume(&self) -> Result<Resumed> {
        Self::set_state(&self.node, &self.nqn, &self.listener, AnaState::Optimized).await?;
        let guard = self
            .guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let lease_expired = match guard {
            Some(g) => {
                g.task.abort();
                g.fired.load(Ordering::SeqCst)
            }
            None => true,
        };
        Ok(Resumed { lease_expired })
    }
}
