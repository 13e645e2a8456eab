//! The SPDK JSON-RPC methods the controller may call through the agent.
//!
//! Anything else (`spdk_kill_instance`, `bdev_malloc_*`, framework and
//! logging methods ...) is refused before it reaches spdk_tgt.

/// Exactly the methods the controller uses, sorted.
pub const ALLOWED_METHODS: &[&str] = &[
    "bdev_aio_create",
    "bdev_aio_delete",
    "bdev_get_bdevs",
    "bdev_get_iostat",
    "bdev_lvol_check_shallow_copy",
    "bdev_lvol_clone",
    "bdev_lvol_create",
    "bdev_lvol_create_lvstore",
    "bdev_lvol_decouple_parent",
    "bdev_lvol_delete",
    "bdev_lvol_get_lvols",
    "bdev_lvol_get_lvstores",
    "bdev_lvol_inflate",
    "bdev_lvol_rename",
    "bdev_lvol_resize",
    "bdev_lvol_set_parent",
    "bdev_lvol_set_read_only",
    "bdev_lvol_snapshot",
    "bdev_lvol_start_shallow_copy",
    "bdev_null_create",
    "bdev_null_delete",
    "bdev_nvme_attach_controller",
    "bdev_nvme_detach_controller",
    "bdev_nvme_get_controllers",
    "bdev_nvme_set_options",
    "bdev_raid_add_base_bdev",
    "bdev_raid_create",
    "bdev_raid_delete",
    "bdev_raid_get_bdevs",
    "bdev_raid_remove_base_bdev",
    "bdev_raid_set_options",
    "bdev_wait_for_examine",
    "nvmf_create_subsystem",
    "nvmf_create_transport",
    "nvmf_delete_subsystem",
    "nvmf_get_subsystems",
    "nvmf_get_transports",
    "nvmf_subsystem_add_host",
    "nvmf_subsystem_add_listener",
    "nvmf_subsystem_add_ns",
    "nvmf_subsystem_get_listeners",
    "nvmf_subsystem_listener_set_ana_state",
    "nvmf_subsystem_remove_host",
    "nvmf_subsystem_remove_listener",
    "nvmf_subsystem_remove_ns",
    "nvmf_subsystem_set_ns_ana_group",
    "rpc_get_methods",
    "spdk_get_version",
    "ublk_create_target",
    "ublk_destroy_target",
    "ublk_get_disks",
    "ublk_start_disk",
    "ublk_stop_disk",
];

/// True when the controller may call `method` through the agent.
pub fn is_allowed(method: &str) -> bool {
    ALLOWED_METHODS.binary_search(&method).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_and_unique_so_binary_search_is_exact() {
        assert!(ALLOWED_METHODS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn dangerous_and_unknown_methods_are_refused() {
        for m in [
            "spdk_kill_instance",
            "bdev_malloc_create",
            "bdev_malloc_delete",
            "framework_set_scheduler",
            "log_set_level",
            "bdev_get_bdevs ",
            "BDEV_GET_BDEVS",
            "",
        ] {
            assert!(!is_allowed(m), "{m:?} must be refused");
        }
        assert!(is_allowed("bdev_get_bdevs"));
        assert!(is_allowed("nvmf_subsystem_set_ns_ana_group"));
    }
}
