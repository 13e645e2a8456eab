//! SPDK JSON-RPC calls per CSI operation, counted by the controller's own
//! clients (one per storage node), next to the least each operation needs.

use std::collections::BTreeMap;

use shorthorn_controller::context::Context;

use super::stats::Samples;

/// The calls every node's client had issued at one instant.
#[derive(Debug, Clone, Default)]
pub struct CallSnapshot {
    by_method: BTreeMap<String, u64>,
}

impl CallSnapshot {
    /// Reads the counters of every node's client.
    pub fn take(ctx: &Context) -> Self {
        let mut by_method = BTreeMap::new();
        for node in ctx.nodes.all() {
            for (method, n) in node.client.calls_by_method() {
                *by_method.entry(method).or_insert(0) += n;
            }
        }
        Self { by_method }
    }

    /// The calls issued since `earlier`, by method.
    pub fn since(&self, earlier: &CallSnapshot) -> BTreeMap<String, u64> {
        self.by_method
            .iter()
            .filter_map(|(m, &n)| {
                let before = earlier.by_method.get(m).copied().unwrap_or(0);
                (n > before).then(|| (m.clone(), n - before))
            })
            .collect()
    }
}

/// Calls per run of one operation.
#[derive(Debug, Clone, Default)]
pub struct CallTally {
    /// Total calls of each run.
    pub per_run: Samples,
    /// Calls by method, summed over every run.
    pub by_method: BTreeMap<String, u64>,
}

impl CallTally {
    /// Records one run's calls.
    pub fn record(&mut self, delta: &BTreeMap<String, u64>) {
        let total: u64 = delta.values().sum();
        self.per_run.push(total as f64);
        for (m, n) in delta {
            *self.by_method.entry(m.clone()).or_insert(0) += n;
        }
    }
}

/// The least SPDK JSON-RPC calls an operation on a 3-replica volume needs,
/// with the calls that make up that minimum.
#[derive(Debug, Clone, Copy)]
pub struct Minimum {
    /// Number of calls.
    pub calls: u64,
    /// Which calls.
    pub why: &'static str,
}

/// CreateVolume, 3 replicas: one `bdev_lvol_create` per replica node.
pub const MIN_CREATE_VOLUME: Minimum = Minimum {
    calls: 3,
    why: "3 x bdev_lvol_create",
};

/// ControllerPublishVolume, 3 replicas, ublk frontend: each of the 2 remote
/// replicas is exported (`nvmf_create_subsystem`, `nvmf_subsystem_add_ns`,
/// `nvmf_subsystem_add_listener`) and attached on the consumer
/// (`bdev_nvme_attach_controller`), then `bdev_raid_create` and
/// `ublk_start_disk`: 2 x 3 + 2 + 1 + 1.
pub const MIN_PUBLISH_UBLK: Minimum = Minimum {
    calls: 10,
    why: "2 x (create_subsystem + add_ns + add_listener + nvme_attach) + raid_create + ublk_start_disk",
};

/// ControllerPublishVolume, 3 replicas, nvme_tcp frontend: as with ublk, but
/// the RAID1 is exported to the kernel through its own subsystem, open to
/// the kernel host only (create, add_ns, add_listener, add_host) instead of
/// `ublk_start_disk`: 2 x 4 + 1 + 4.
pub const MIN_PUBLISH_NVME_TCP: Minimum = Minimum {
    calls: 13,
    why: "2 x (create_subsystem + add_ns + add_listener + nvme_attach) + raid_create + 4 to export the raid",
};

/// NodeStageVolume talks to the kernel only.
pub const MIN_NODE_STAGE: Minimum = Minimum {
    calls: 0,
    why: "kernel only",
};

/// CreateSnapshot, 3 replicas: one `bdev_lvol_snapshot` per replica (the
/// fence is a node-agent call, not SPDK JSON-RPC).
pub const MIN_CREATE_SNAPSHOT: Minimum = Minimum {
    calls: 3,
    why: "3 x bdev_lvol_snapshot",
};

/// CreateVolume from a snapshot of the same size: one `bdev_lvol_clone` per replica.
pub const MIN_CREATE_FROM_SNAPSHOT: Minimum = Minimum {
    calls: 3,
    why: "3 x bdev_lvol_clone",
};

/// ControllerUnpublishVolume: `ublk_stop_disk` (or `nvmf_delete_subsystem` of
/// the raid's export), `bdev_raid_delete`,
/// 2 x `bdev_nvme_detach_controller`, 2 x `nvmf_delete_subsystem`.
pub const MIN_UNPUBLISH: Minimum = Minimum {
    calls: 6,
    why: "stop the frontend + raid_delete + 2 x nvme_detach + 2 x delete_subsystem",
};

/// DeleteSnapshot, 3 replicas: one `bdev_lvol_delete` per replica.
pub const MIN_DELETE_SNAPSHOT: Minimum = Minimum {
    calls: 3,
    why: "3 x bdev_lvol_delete",
};

/// DeleteVolume of an unpublished volume, 3 replicas: one `bdev_lvol_delete` per replica.
pub const MIN_DELETE_VOLUME: Minimum = Minimum {
    calls: 3,
    why: "3 x bdev_lvol_delete",
};
