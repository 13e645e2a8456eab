//! Makes a storage node usable and reads its space.
//!
//! Bootstrap is idempotent and runs on first use and after a node was found
//! unreachable: create the aio base bdev if configured and missing (SPDK then
//! examines it and finds an existing lvstore), create the lvstore if still
//! missing, create the NVMe-oF TCP transport if missing, and check (or
//! set) the node's cluster stamp (`stamp::ensure`).

use spdk_client::{
    BdevAioCreateParams, BdevGetBdevsParams, BdevLvolCreateLvstoreParams,
    BdevLvolGetLvstoresParams, NvmfCreateTransportParams, NvmfGetTransportsParams,
};

use tracing::Instrument;

use super::NodeHandle;
use crate::capacity::LvstoreSpace;
use crate::config::BaseBdev;
use crate::error::{ControllerError, Result};
use crate::naming::{AIO_BASE_PREFIX, CLUSTER_STAMP_PREFIX, LVOL_PREFIX};

/// Name of the aio bdev the controller creates over a configured file.
pub fn aio_bdev_name(lvstore: &str) -> String {
    format!("{AIO_BASE_PREFIX}{lvstore}")
}

/// Bootstraps `node` unless already done since it was last reachable.
pub async fn ensure_ready(node: &NodeHandle) -> Result<()> {
    if node.status().bootstrapped {
        return Ok(());
    }
    let _guard = node.lock.lock().await;
    if node.status().bootstrapped {
        return Ok(());
    }
    bootstrap(node)
        .instrument(tracing::info_span!("bootstrap", node = node.name()))
        .await
}

async fn bootstrap(node: &NodeHandle) -> Result<()> {
    let c = &node.client;
    c.spdk_get_version()
        .await
        .map_err(|e| node.call_failed("spdk_get_version", e))?;
    if find_lvstore(node).await?.is_none() {
        let base = match &node.config.base_bdev {
            Some(BaseBdev::Aio {
                aio_file,
                block_size,
            }) => {
                let name = aio_bdev_name(&node.config.lvstore);
                let present = c
                    .bdev_get(&name)
                    .await
                    .map_err(|e| node.call_failed("bdev_get_bdevs", e))?;
                if present.is_none() {
                    let params = BdevAioCreateParams {
                        name: name.clone(),
                        filename: aio_file.display().to_string(),
                        block_size: Some(*block_size),
                        ..Default::default()
                    };
                    match c.bdev_aio_create(&params).await {
                        Ok(_) => {}
                        Err(e) if e.is_already_exists() => {}
                        Err(e) => return Err(node.call_failed("bdev_aio_create", e).into()),
                    }
                    c.bdev_wait_for_examine()
                        .await
                        .map_err(|e| node.call_failed("bdev_wait_for_examine", e))?;
                }
                name
            }
            Some(BaseBdev::Existing(name)) => name.clone(),
            None => {
                return Err(ControllerError::NoBaseBdev {
                    node: node.name().to_string(),
                    lvstore: node.config.lvstore.clone(),
                })
            }
        };
        if find_lvstore(node).await?.is_none() {
            // An lvstore this controller has seen here is never created
            // again: that would format the disk under every replica on it.
            if let Some(uuid) = node.status().lvstore_uuid {
                tracing::error!(base, lvstore = node.config.lvstore, %uuid, "lvstore seen before is missing after its base bdev came back: not creating a new one");
                return Err(ControllerError::LvstoreMissing {
                    node: node.name().to_string(),
                    lvstore: node.config.lvstore.clone(),
                });
            }
            tracing::info!(base, lvstore = node.config.lvstore, "creating lvstore");
            let params = BdevLvolCreateLvstoreParams {
                bdev_name: base,
                lvs_name: node.config.lvstore.clone(),
                cluster_sz: Some(node.config.cluster_size),
                ..Default::default()
            };
            c.bdev_lvol_create_lvstore(&params)
                .await
                .map_err(|e| node.call_failed("bdev_lvol_create_lvstore", e))?;
        }
    }
    let transports = c
        .nvmf_get_transports(&NvmfGetTransportsParams::default())
        .await
        .map_err(|e| node.call_failed("nvmf_get_transports", e))?;
    if !transports
        .iter()
        .any(|t| t.trtype.eq_ignore_ascii_case("tcp"))
    {
        let params = NvmfCreateTransportParams {
            trtype: "TCP".into(),
            ..Default::default()
        };
        match c.nvmf_create_transport(&params).await {
            Ok(()) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(node.call_failed("nvmf_create_transport", e).into()),
        }
    }
    if let Some(cluster) = node.cluster() {
        super::stamp::ensure(node, cluster).await?;
    }
    node.update_status(|s| {
        s.bootstrapped = true;
        s.online = true;
    });
    Ok(())
}

/// What a cheap liveness probe of a node found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// It answered and still holds what bootstrap set up (or was never set up).
    Answered,
    /// It answered but lost its configuration since it was bootstrapped: its
    /// spdk_tgt restarted. It has been bootstrapped again (base bdev, so the
    /// lvstore loads through examine, transport, stamp).
    Restarted,
}

/// Probes `node` with one cheap call (`nvmf_get_transports`). A node that
/// was bootstrapped but has no TCP transport any more restarted: its
/// bootstrapped view is dropped at once and it is bootstrapped again, so
/// the view never stays stale whether or not a call happened to fail.
pub async fn probe(node: &NodeHandle) -> Result<Probe> {
    let transports = node
        .client
        .nvmf_get_transports(&NvmfGetTransportsParams::default())
        .await
        .map_err(|e| node.call_failed("nvmf_get_transports", e))?;
    let has_tcp = transports
        .iter()
        .any(|t| t.trtype.eq_ignore_ascii_case("tcp"));
    let seen_before = {
        let s = node.status();
        s.bootstrapped || s.lvstore_uuid.is_some()
    };
    if has_tcp || !seen_before {
        if !node.status().online {
            node.update_status(|s| s.online = true);
        }
        return Ok(Probe::Answered);
    }
    node.update_status(|s| {
        // Counted once, not again each time a failed re-bootstrap is retried.
        if s.bootstrapped {
            s.restarts += 1;
            s.last_restart = Some(std::time::SystemTime::now());
        }
        s.bootstrapped = false;
        s.exports_lost = true;
    });
    tracing::warn!(
        node = node.name(),
        "spdk_tgt restarted (its NVMe-oF transport is gone): bootstrapping it again"
    );
    ensure_ready(node).await.map(|()| Probe::Restarted)
}

async fn find_lvstore(node: &NodeHandle) -> Result<Option<spdk_client::Lvstore>> {
    let all = node
        .client
        .bdev_lvol_get_lvstores(&BdevLvolGetLvstoresParams::default())
        .await
        .map_err(|e| node.call_failed("bdev_lvol_get_lvstores", e))?;
    Ok(all.into_iter().find(|l| l.name == node.config.lvstore))
}

/// The lvstore's uuid, its space (provisioned = sum of the sizes of every
/// lvol on it) and the number of Shorthorn replicas on it.
pub async fn read_space(node: &NodeHandle) -> Result<(String, LvstoreSpace, usize)> {
    let lvs = find_lvstore(node)
        .await?
        .ok_or_else(|| ControllerError::LvstoreMissing {
            node: node.name().to_string(),
            lvstore: node.config.lvstore.clone(),
        })?;
    let bdevs = node
        .client
        .bdev_get_bdevs(&BdevGetBdevsParams::default())
        .await
        .map_err(|e| node.call_failed("bdev_get_bdevs", e))?;
    let prefix = format!("{}/{LVOL_PREFIX}", lvs.name);
    let stamp = format!("{}/{CLUSTER_STAMP_PREFIX}", lvs.name);
    let mut provisioned = 0u64;
    let mut replicas = 0usize;
    for bdev in &bdevs {
        let on_store = bdev
            .driver_specific
            .lvol
            .as_ref()
            .is_some_and(|l| l.lvol_store_uuid == lvs.uuid);
        // The cluster stamp never holds data (see `stamp`).
        let is_stamp = bdev.aliases.iter().any(|a| a.starts_with(&stamp));
        if on_store && !is_stamp {
            provisioned += bdev.size_bytes();
            if bdev.aliases.iter().any(|a| a.starts_with(&prefix)) {
                replicas += 1;
            }
        }
    }
    let space = LvstoreSpace {
        cluster_size: lvs.cluster_size,
        total_clusters: lvs.total_data_clusters,
        free_clusters: lvs.free_clusters,
        provisioned_bytes: provisioned,
    };
    Ok((lvs.uuid, space, replicas))
}
