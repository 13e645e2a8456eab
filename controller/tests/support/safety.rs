//! Helpers of the data-safety tests: waiting for what the controller
//! records, reading every replica's bytes directly, and the raid's members.

use std::time::{Duration, Instant};

use shorthorn_controller::naming;
use spdk_client::{BdevLvolGetLvstoresParams, BdevRaidGetBdevsParams, NvmfGetSubsystemsParams};

use super::Harness;

/// Polls `check` every 100 ms until it returns `Some`, or panics with
/// `what` after `timeout`. Returns the value and how long it took.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return (v, start.elapsed());
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Harness {
    /// The node name of storage node `i`.
    pub fn node_name(&self, i: usize) -> String {
        self.cluster.node(i).name.clone()
    }

    /// Index of the storage node called `name`.
    pub fn node_index(&self, name: &str) -> usize {
        (0..self.cluster.nodes().len())
            .find(|&i| self.cluster.node(i).name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The bytes `[0, len)` of the replica lvol of `volume` on node `i`,
    /// read from that node's SPDK directly (not through any raid).
    pub async fn replica_bytes(&self, i: usize, volume: &str, len: usize) -> Vec<u8> {
        let lvstore = &self.config().nodes[i].lvstore;
        let alias = format!("{lvstore}/{}", naming::replica_lvol(volume));
        self.cluster
            .data_path()
            .read(self.cluster.node(i), &alias, 0, len as u64)
            .await
            .unwrap_or_else(|e| panic!("reading {alias} on node {i}: {e}"))
    }

    /// Waits until ControllerGetVolume says the replica on `node` is in
    /// state `state` (e.g. "stale"); returns how long it took.
    pub async fn wait_replica_state(&mut self, volume: &str, node: &str, state: &str) -> Duration {
        let needle = format!("replica on {node} is {state}");
        let timeout = Duration::from_secs(30);
        let start = Instant::now();
        loop {
            let c = self.volume_condition(volume).await;
            if c.message.contains(&needle) {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!("replica on {node} never became {state}: {}", c.message);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The nodes whose legs the raid of `volume` on node `engine` holds
    /// (configured slots), named by the replica's node.
    pub async fn raid_member_nodes(&self, volume: &str, engine: usize) -> Vec<String> {
        let raid = naming::raid_bdev(volume);
        let raids = self
            .spdk(engine)
            .bdev_raid_get_bdevs(&BdevRaidGetBdevsParams::default())
            .await
            .expect("raids");
        let Some(r) = raids.into_iter().find(|r| r.name.as_deref() == Some(&raid)) else {
            return Vec::new();
        };
        let engine_name = self.node_name(engine);
        let mut out = Vec::new();
        for b in r.base_bdevs_list.iter().filter(|b| b.is_configured) {
            let name = b.name.clone().unwrap_or_default();
            let remote = (0..self.cluster.nodes().len())
                .map(|i| self.node_name(i))
                .find(|n| name == naming::nvme_namespace_bdev(&naming::nvme_controller(volume, n)));
            match remote {
                Some(n) => out.push(n),
                None if name.starts_with(naming::RAID_PAD_PREFIX) => {}
                None => out.push(engine_name.clone()),
            }
        }
        out.sort();
        out
    }

    /// Whether node `i` has its lvstore loaded.
    pub async fn lvstore_loaded(&self, i: usize) -> bool {
        let lvstore = self.config().nodes[i].lvstore.clone();
        match self
            .spdk(i)
            .bdev_lvol_get_lvstores(&BdevLvolGetLvstoresParams::default())
            .await
        {
            Ok(all) => all.iter().any(|l| l.name == lvstore),
            Err(_) => false,
        }
    }

    /// The hosts admitted by the replica export of `volume` on node `i`
    /// (`None` if there is no such export).
    pub async fn replica_export_hosts(&self, volume: &str, i: usize) -> Option<Vec<String>> {
        let nqn = naming::replica_nqn(volume, &self.node_name(i));
        let subs = self
            .spdk(i)
            .nvmf_get_subsystems(&NvmfGetSubsystemsParams::default())
            .await
            .ok()?;
        subs.into_iter()
            .find(|s| s.nqn == nqn)
            .map(|s| s.hosts.into_iter().map(|h| h.nqn).collect())
    }
}

/// p50 and p99 of some durations (nearest rank).
pub fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let rank = |p: f64| {
        let idx = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[idx]
    };
    (rank(0.50), rank(0.99))
}
