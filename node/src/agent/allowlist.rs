//! The SPDK JSON-RPC methods the controller may call through the agent.
//!
//! Exactly [`agent_api::methods::CONTROLLER_METHODS`]: anything else
//! (`spdk_kill_instance`, `bdev_malloc_*`, framework and logging methods,
//! and methods the controller does not call) is refused before it reaches
//! spdk_tgt. Each allowed call is then checked by [`super::policy`].

/// Exactly the methods the controller uses, sorted.
pub const ALLOWED_METHODS: &[&str] = agent_api::methods::CONTROLLER_METHODS;

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
    fn dangerous_unknown_and_unused_methods_are_refused() {
        for m in [
            "spdk_kill_instance",
            "bdev_malloc_create",
            "bdev_malloc_delete",
            "framework_set_scheduler",
            "log_set_level",
            "bdev_aio_delete",
            "bdev_lvol_set_parent",
            "nvmf_subsystem_remove_listener",
            "rpc_get_methods",
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
