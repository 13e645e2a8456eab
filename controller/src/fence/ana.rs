//! The ANA fence of an NVMe/TCP-published volume.
//!
//! On the publishing node, the kernel reaches the volume's raid1 through the
//! loopback listener of the volume subsystem (created with ANA reporting).
//! Suspend: set that listener ANA-inaccessible (the host stops sending and
//! retries queued I/O until the path comes back), then re-set namespace 1's
//! ANA group, which SPDK completes only once the namespace's in-flight I/O
//! has drained. Resume: set the listener optimized.
//!
//! A guard task started with the suspend restores optimized at the deadline
//! even if the snapshot calls (or the drain itself) hang.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use spdk_client::{
    AnaState, ListenAddress, NvmfSubsystemListenerSetAnaStateParams,
    NvmfSubsystemSetNsAnaGroupParams,
};
use tokio::task::JoinHandle;

use super::{Fence, FenceKind};
use crate::error::Result;
use crate::naming;
use crate::nodes::NodeHandle;

/// Namespace id of the volume in its frontend subsystem.
const NSID: u32 = 1;
/// ANA group of that namespace (SPDK's default: the namespace id).
const ANA_GROUP: u32 = 1;

/// Fences the frontend subsystem of one volume on its publishing node.
#[derive(Debug)]
pub struct AnaFence {
    node: Arc<NodeHandle>,
    nqn: String,
    listener: ListenAddress,
    guard: Mutex<Option<JoinHandle<()>>>,
}

impl AnaFence {
    /// The fence of `volume_id`'s frontend subsystem on `node`.
    pub fn new(node: Arc<NodeHandle>, volume_id: &str) -> Self {
        // Matches the listener ControllerPublishVolume creates.
        let address = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let listener = ListenAddress {
            trtype: "TCP".into(),
            adrfam: Some("IPv4".into()),
            traddr: address.to_string(),
            trsvcid: Some(node.config.nvmf_port.to_string()),
        };
        Self {
            nqn: naming::volume_nqn(volume_id),
            node,
            listener,
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

    fn cancel_guard(&self) {
        if let Some(task) = self
            .guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

#[async_trait]
impl Fence for AnaFence {
    fn kind(&self) -> FenceKind {
        FenceKind::Ana
    }

    async fn suspend(&self, deadline: Duration) -> Result<()> {
        let (node, nqn, listener) = (self.node.clone(), self.nqn.clone(), self.listener.clone());
        let guard = tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            tracing::warn!(nqn = %nqn, ?deadline, "ANA fence deadline passed; restoring the optimized path");
            // Retry until the node answers: a path left inaccessible stalls the pod.
            loop {
                match Self::set_state(&node, &nqn, &listener, AnaState::Optimized).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::error!(nqn = %nqn, error = %e, "restoring the optimized ANA state failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        if let Some(old) = self
            .guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(guard)
        {
            old.abort();
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
            nsid: NSID,
            anagrpid: ANA_GROUP,
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

    async fn resume(&self) -> Result<()> {
        self.cancel_guard();
        Self::set_state(&self.node, &self.nqn, &self.listener, AnaState::Optimized).await
    }
}
