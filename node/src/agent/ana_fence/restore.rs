//! At start-up: the fences a previous run of this agent held.
//!
//! Leases live in the agent process; the ANA state they set lives in
//! spdk_tgt. An agent that restarts while a fence is held would leave the
//! volume's path inaccessible for good, so before it serves its first
//! suspend the agent finds every Shorthorn volume subsystem's loopback
//! listener that is not `optimized` and restores it. A controller whose
//! snapshot was under such a fence learns it from its resume (`expired`).

use std::time::Duration;

use agent_api::ana_fence::{is_volume_nqn, FenceListener};
use spdk_client::{
    AnaState, ListenAddress, NvmfGetSubsystemsParams, NvmfSubsystemGetListenersParams, SpdkClient,
};
use tokio::sync::watch;

use super::lease::set_state;
use crate::error::{NodeError, Result};

/// First pause between passes while spdk_tgt cannot be read; doubled up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Runs passes until one completes, then reports ready on `ready`.
pub(crate) async fn restore_until_done(spdk: SpdkClient, ready: watch::Sender<bool>) {
    let mut pause = FIRST_PAUSE;
    loop {
        match restore_once(&spdk).await {
            Ok(restored) => {
                if restored > 0 {
                    tracing::warn!(
                        restored,
                        "restored the optimized ANA path of volumes a previous agent run left fenced"
                    );
                }
                let _ = ready.send(true);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?pause, "cannot yet check for ANA fences left by a previous agent run");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

/// One pass; the number of listeners restored.
async fn restore_once(spdk: &SpdkClient) -> Result<usize> {
    let failed = |method: &'static str| {
        move |source| NodeError::AnaFenceSpdk {
            nqn: "*".to_owned(),
            method,
            source,
        }
    };
    let subsystems = spdk
        .nvmf_get_subsystems(&NvmfGetSubsystemsParams::default())
        .await
        .map_err(failed("nvmf_get_subsystems"))?;
    let mut restored = 0;
    for sub in subsystems.iter().filter(|s| is_volume_nqn(&s.nqn)) {
        let listeners = spdk
            .nvmf_subsystem_get_listeners(&NvmfSubsystemGetListenersParams {
                nqn: sub.nqn.clone(),
                tgt_name: None,
            })
            .await
            .map_err(failed("nvmf_subsystem_get_listeners"))?;
        for l in listeners {
            let Some(listener) = loopback(&l.address) else {
                continue;
            };
            let fenced = l.ana_states.iter().any(|s| s.ana_state != "optimized");
            if fenced {
                set_state(spdk, &sub.nqn, &listener, AnaState::Optimized).await?;
                tracing::warn!(nqn = %sub.nqn, listener = %listener.traddr, port = %listener.trsvcid, "a previous agent run left this volume's path fenced; restored optimized");
                restored += 1;
            }
        }
    }
    Ok(restored)
}

/// The listener as a fence names it, if it is one a fence may act on.
fn loopback(address: &ListenAddress) -> Option<FenceListener> {
    let listener = FenceListener {
        trtype: address.trtype.clone(),
        adrfam: address.adrfam.clone().unwrap_or_else(|| "IPv4".to_owned()),
        traddr: address.traddr.clone(),
        trsvcid: address.trsvcid.clone().unwrap_or_default(),
    };
    listener.check().is_ok().then_some(listener)
}
