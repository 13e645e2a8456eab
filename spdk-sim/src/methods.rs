//! Routes one JSON-RPC method call to the module that implements it.

use std::sync::Arc;

use serde_json::Value;

use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Methods the storage side answers (general, base bdevs, lvol, sim-only).
pub const STORAGE_METHODS: &[&str] = &[
    "spdk_get_version",
    "rpc_get_methods",
    "spdk_kill_instance",
    "env_dpdk_get_mem_stats",
    "framework_get_reactors",
    "framework_get_subsystems",
    "bdev_wait_for_examine",
    "bdev_examine",
    "bdev_get_bdevs",
    "bdev_get_iostat",
    "bdev_enable_histogram",
    "bdev_get_histogram",
    "bdev_malloc_create",
    "bdev_malloc_delete",
    "bdev_aio_create",
    "bdev_aio_delete",
    "bdev_aio_rescan",
    "bdev_null_create",
    "bdev_null_delete",
    "bdev_lvol_create_lvstore",
    "bdev_lvol_delete_lvstore",
    "bdev_lvol_get_lvstores",
    "bdev_lvol_rename_lvstore",
    "bdev_lvol_grow_lvstore",
    "bdev_lvol_create",
    "bdev_lvol_delete",
    "bdev_lvol_resize",
    "bdev_lvol_rename",
    "bdev_lvol_snapshot",
    "bdev_lvol_clone",
    "bdev_lvol_clone_bdev",
    "bdev_lvol_get_lvols",
    "bdev_lvol_inflate",
    "bdev_lvol_decouple_parent",
    "bdev_lvol_set_read_only",
    "bdev_lvol_set_parent",
    "bdev_lvol_set_parent_bdev",
    "bdev_lvol_start_shallow_copy",
    "bdev_lvol_check_shallow_copy",
];

/// Network-side methods recorded in the transcripts (the network modules answer them).
pub const NETWORK_METHODS: &[&str] = &[
    "nvmf_create_transport",
    "nvmf_get_transports",
    "nvmf_create_subsystem",
    "nvmf_delete_subsystem",
    "nvmf_get_subsystems",
    "nvmf_subsystem_add_ns",
    "nvmf_subsystem_add_listener",
    "nvmf_subsystem_get_controllers",
    "nvmf_subsystem_get_listeners",
    "nvmf_subsystem_get_qpairs",
    "nvmf_get_stats",
    "bdev_nvme_attach_controller",
    "bdev_nvme_detach_controller",
    "bdev_nvme_get_controllers",
    "bdev_nvme_get_io_paths",
    "bdev_raid_create",
    "bdev_raid_delete",
    "bdev_raid_get_bdevs",
    "bdev_raid_add_base_bdev",
    "bdev_raid_remove_base_bdev",
    "bdev_raid_set_options",
    "ublk_create_target",
    "ublk_destroy_target",
    "ublk_get_disks",
    "ublk_start_disk",
    "ublk_stop_disk",
    "nvmf_subsystem_remove_ns",
    "nvmf_subsystem_remove_listener",
    "nvmf_subsystem_add_host",
    "nvmf_subsystem_remove_host",
    "nvmf_subsystem_allow_any_host",
    "nvmf_subsystem_listener_set_ana_state",
    "nvmf_subsystem_set_ns_ana_group",
    "bdev_nvme_set_options",
];

/// The `rpc_get_methods` answer: SPDK methods this sim implements (sim-only
/// `sim_*` methods are deliberately not listed).
pub fn implemented() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = STORAGE_METHODS
        .iter()
        .chain(NETWORK_METHODS.iter())
        .copied()
        .collect();
    v.sort_unstable();
    v
}

/// Runs `method` with `params` and returns its result or error.
pub async fn dispatch(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Result<Value, RpcError> {
    if let Some(r) = crate::general::handle(sim, method, params).await {
        return r;
    }
    if let Some(r) = crate::bdev_rpc::handle(sim, method, params).await {
        return r;
    }
    if let Some(r) = crate::base::handle(sim, method, params).await {
        return r;
    }
    if let Some(r) = crate::sim_methods::handle(sim, method, params).await {
        return r;
    }
    if let Some(r) = crate::lvol::handle(sim, method, params).await {
        return r;
    }
    if let Some(r) = crate::nvmf::handle(sim, method, params).await {
        return r;
    }
    if let Some(r) = crate::nvme::handle(sim, method, params).await {
        return r;
    }
    if let Some(r) = crate::raid::handle(sim, method, params).await {
        return r;
    }
    if let Some(r) = crate::ublk::handle(sim, method, params).await {
        return r;
    }
    Err(RpcError::method_not_found())
}
