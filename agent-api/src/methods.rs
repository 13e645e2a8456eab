//! The SPDK JSON-RPC methods the controller calls through a node agent.
//!
//! The agent forwards exactly these (each under its parameter policy);
//! a test in the controller crate fails when the controller's calls and
//! this list drift apart.

/// Exactly the methods the controller calls, sorted.
pub const CONTROLLER_METHODS: &[&str] = &[
    "bdev_aio_create",
    "bdev_enable_histogram",
    "bdev_get_bdevs",
    "bdev_get_histogram",
    "bdev_get_iostat",
    "bdev_lvol_check_shallow_copy",
    "bdev_lvol_clone",
    "bdev_lvol_create",
    "bdev_lvol_create_lvstore",
    "bdev_lvol_delete",
    "bdev_lvol_get_lvols",
    "bdev_lvol_get_lvstores",
    "bdev_lvol_rename",
    "bdev_lvol_resize",
    "bdev_lvol_snapshot",
    "bdev_lvol_start_shallow_copy",
    "bdev_null_create",
    "bdev_null_delete",
    "bdev_nvme_attach_controller",
    "bdev_nvme_detach_controller",
    "bdev_nvme_get_controllers",
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
    "nvmf_subsystem_listener_set_ana_state",
    "nvmf_subsystem_remove_host",
    "nvmf_subsystem_remove_ns",
    "nvmf_subsystem_set_ns_ana_group",
    "spdk_get_version",
    "ublk_create_target",
    "ublk_get_disks",
    "ublk_start_disk",
    "ublk_stop_disk",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_and_unique_so_binary_search_is_exact() {
        assert!(CONTROLLER_METHODS.windows(2).all(|w| w[0] < w[1]));
    }
}
