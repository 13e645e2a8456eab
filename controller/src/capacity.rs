//! Volume size arithmetic: rounding a CSI capacity range to whole clusters,
//! and how much an lvstore can still take under the overprovisioning ratio.

use crate::error::{ControllerError, Result};

/// Size given to a volume whose request names no size (1 GiB).
pub const DEFAULT_VOLUME_SIZE: u64 = 1024 * 1024 * 1024;

/// Rounds a CSI capacity range to a multiple of `granule` bytes (the largest
/// lvstore cluster size, so every replica is a whole number of clusters).
///
/// `required` and `limit` are the request's bytes (0 = unspecified). The
/// result is at least `required`, at most `limit` when a limit is given.
pub fn round_to_clusters(required: i64, limit: i64, granule: u64) -> Result<u64> {
    if required < 0 || limit < 0 {
        return Err(ControllerError::CapacityOutOfRange {
            reason: format!(
                "capacity_range has a negative bound (required {required}, limit {limit})"
            ),
        });
    }
    let (required, limit) = (required as u64, limit as u64);
    if limit > 0 && required > limit {
        return Err(ControllerError::CapacityOutOfRange {
            reason: format!("required_bytes {required} exceeds limit_bytes {limit}"),
        });
    }
    let granule = granule.max(1);
    if required == 0 {
        let size = if limit == 0 {
            DEFAULT_VOLUME_SIZE.div_ceil(granule) * granule
        } else {
            DEFAULT_VOLUME_SIZE.min(limit) / granule * granule
        };
        if size == 0 {
            return Err(ControllerError::CapacityOutOfRange { reason: format!(
                "limit_bytes {limit} is smaller than one cluster ({granule} bytes), the smallest volume Shorthorn can create"
            ) });
        }
        return Ok(size);
    }
    let size = required
        .div_ceil(granule)
        .checked_mul(granule)
        .filter(|s| i64::try_from(*s).is_ok())
        .ok_or_else(|| ControllerError::CapacityOutOfRange {
            reason: format!("required_bytes {required} is too large"),
        })?;
    if limit > 0 && size > limit {
        return Err(ControllerError::CapacityOutOfRange { reason: format!(
            "required_bytes {required} rounded up to whole {granule}-byte clusters is {size}, above limit_bytes {limit}; raise the limit or request a multiple of {granule}"
        ) });
    }
    Ok(size)
}

/// Space accounting of one lvstore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LvstoreSpace {
    /// Cluster size in bytes.
    pub cluster_size: u64,
    /// Data clusters in the lvstore.
    pub total_clusters: u64,
    /// Clusters not allocated to any lvol.
    pub free_clusters: u64,
    /// Sum of the provisioned sizes of the lvols on it, in bytes.
    pub provisioned_bytes: u64,
}

impl LvstoreSpace {
    /// Capacity in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total_clusters * self.cluster_size
    }

    /// Unallocated bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free_clusters * self.cluster_size
    }

    /// Bytes that may still be provisioned under `ratio`.
    ///
    /// Never more than the free bytes when `ratio <= 1`, so without overcommit
    /// a thin lvstore cannot run out of clusters underneath its lvols.
    pub fn provisionable_bytes(&self, ratio: f64) -> u64 {
        let allowed = (self.total_bytes() as f64 * ratio).floor() as u64;
        let headroom = allowed.saturating_sub(self.provisioned_bytes);
        if ratio <= 1.0 {
            headroom.min(self.free_bytes())
        } else {
            headroom
        }
    }

    /// Free space as a percentage of capacity (100 for an empty store).
    pub fn free_percent(&self) -> f64 {
        if self.total_clusters == 0 {
            0.0
        } else {
            self.free_clusters as f64 * 100.0 / self.total_clusters as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn rounds_up_to_whole_clusters() {
        assert_eq!(round_to_clusters(1, 0, 4 * MIB).unwrap(), 4 * MIB);
        assert_eq!(
            round_to_clusters((4 * MIB) as i64, 0, 4 * MIB).unwrap(),
            4 * MIB
        );
        assert_eq!(
            round_to_clusters(0, 0, 4 * MIB).unwrap(),
            DEFAULT_VOLUME_SIZE
        );
        assert_eq!(
            round_to_clusters(0, (10 * MIB) as i64, 4 * MIB).unwrap(),
            8 * MIB
        );
    }

    #[test]
    fn refuses_sizes_the_limit_cannot_hold() {
        let e = round_to_clusters(10, 5, MIB).unwrap_err();
        assert!(matches!(e, ControllerError::CapacityOutOfRange { .. }));
        let e = round_to_clusters(MIB as i64, (3 * MIB) as i64, 4 * MIB).unwrap_err();
        assert!(e.to_string().contains("above limit_bytes"), "{e}");
        let e = round_to_clusters(0, MIB as i64, 4 * MIB).unwrap_err();
        assert!(matches!(e, ControllerError::CapacityOutOfRange { .. }));
        let e = round_to_clusters(i64::MAX, 0, 4 * MIB).unwrap_err();
        assert!(matches!(e, ControllerError::CapacityOutOfRange { .. }));
    }

    #[test]
    fn provisionable_space_honours_the_ratio() {
        let s = LvstoreSpace {
            cluster_size: MIB,
            total_clusters: 100,
            free_clusters: 90,
            provisioned_bytes: 60 * MIB,
        };
        // No overcommit: 40 MiB left to provision, though 90 clusters are free.
        assert_eq!(s.provisionable_bytes(1.0), 40 * MIB);
        // 2x overcommit: 200 - 60.
        assert_eq!(s.provisionable_bytes(2.0), 140 * MIB);
        assert_eq!(s.free_percent(), 90.0);
    }
}
