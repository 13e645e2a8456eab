//! The lvstore metadata model: what is persisted in the metadata slots.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What an lvol reads through to where it has no cluster of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Parent {
    /// Nothing: unallocated clusters read as zeroes.
    None,
    /// A snapshot in the same lvstore, by blob id.
    Snapshot(u64),
    /// An external snapshot: any bdev, by its UUID.
    External(String),
}

/// One blob (lvol, snapshot or clone).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blob {
    /// Blob id, unique within the lvstore, increasing with creation.
    pub id: u64,
    /// The lvol UUID (also its bdev name).
    pub uuid: Uuid,
    /// The lvol name within the lvstore.
    pub name: String,
    /// Size in clusters.
    pub num_clusters: u64,
    /// Thin provisioned.
    pub thin: bool,
    /// Read-only (snapshots, and lvols after `bdev_lvol_set_read_only`).
    pub read_only: bool,
    /// A snapshot.
    pub snapshot: bool,
    /// Backing device for unallocated clusters.
    pub parent: Parent,
    /// Allocated clusters as `[lvol cluster index, device cluster index]` pairs.
    pub map: Vec<[u64; 2]>,
    /// When it became its parent's child: SPDK appends to a snapshot's
    /// clone list as clones are made, snapshots taken and parents set.
    #[serde(default)]
    pub child_since: u64,
}

impl Blob {
    /// The device cluster backing lvol cluster `idx`, if this blob allocated it.
    pub fn cluster(&self, idx: u64) -> Option<u64> {
        self.map
            .binary_search_by_key(&idx, |p| p[0])
            .ok()
            .map(|i| self.map[i][1])
    }

    /// Records that lvol cluster `idx` now lives in device cluster `phys`.
    pub fn set_cluster(&mut self, idx: u64, phys: u64) {
        match self.map.binary_search_by_key(&idx, |p| p[0]) {
            Ok(i) => self.map[i][1] = phys,
            Err(i) => self.map.insert(i, [idx, phys]),
        }
    }

    /// Number of clusters this blob owns.
    pub fn allocated(&self) -> u64 {
        self.map.len() as u64
    }
}

/// Everything persisted about one lvstore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LvsMeta {
    /// lvstore UUID.
    pub uuid: Uuid,
    /// lvstore name.
    pub name: String,
    /// Cluster size in bytes.
    pub cluster_size: u64,
    /// Clusters on the device the lvstore currently uses.
    pub total_clusters: u64,
    /// Clusters reserved for metadata at the front of the device.
    pub md_clusters: u64,
    /// Most clusters a grow may reach.
    pub max_clusters: u64,
    /// The next blob id.
    pub next_id: u64,
    /// Blobs in creation order.
    pub blobs: Vec<Blob>,
    /// The next [`Blob::child_since`].
    #[serde(default)]
    pub next_child_seq: u64,
}

impl LvsMeta {
    /// Clusters available to data.
    pub fn data_clusters(&self) -> u64 {
        self.total_clusters - self.md_clusters
    }

    /// Clusters not owned by any blob.
    pub fn free_clusters(&self) -> u64 {
        let used: u64 = self.blobs.iter().map(Blob::allocated).sum();
        self.data_clusters().saturating_sub(used)
    }

    /// Finds a blob by id.
    pub fn blob(&self, id: u64) -> Option<&Blob> {
        self.blobs.iter().find(|b| b.id == id)
    }

    /// Finds a blob by id, mutably.
    pub fn blob_mut(&mut self, id: u64) -> Option<&mut Blob> {
        self.blobs.iter_mut().find(|b| b.id == id)
    }

    /// Finds a blob by name.
    pub fn by_name(&self, name: &str) -> Option<&Blob> {
        self.blobs.iter().find(|b| b.name == name)
    }

    /// Blobs whose parent is snapshot `id`, in the order they became its children.
    pub fn children(&self, id: u64) -> Vec<&Blob> {
        let mut c: Vec<&Blob> = self
            .blobs
            .iter()
            .filter(|b| b.parent == Parent::Snapshot(id))
            .collect();
        c.sort_by_key(|b| b.child_since);
        c
    }

    /// A fresh [`Blob::child_since`] value.
    pub fn child_seq(&mut self) -> u64 {
        self.next_child_seq += 1;
        self.next_child_seq
    }

    /// Takes `n` free device clusters (lowest first), or `None` if there are fewer.
    pub fn take_free(&self, n: u64) -> Option<Vec<u64>> {
        let mut used = vec![false; usize::try_from(self.total_clusters).ok()?];
        for b in &self.blobs {
            for p in &b.map {
                if let Some(u) = used.get_mut(p[1] as usize) {
                    *u = true;
                }
            }
        }
        let free: Vec<u64> = (self.md_clusters..self.total_clusters)
            .filter(|c| !used[*c as usize])
            .take(usize::try_from(n).ok()?)
            .collect();
        (free.len() as u64 == n).then_some(free)
    }

    /// Allocates a new blob id.
    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// An lvol name is 1..=63 bytes (SPDK_LVOL_NAME_MAX is 64 with the NUL).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() < 64
}
