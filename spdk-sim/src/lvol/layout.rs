//! Where an lvstore lives inside its base bdev.
//!
//! Space accounting follows SPDK's blobstore exactly (so `total_data_clusters`
//! matches spdk_tgt): the metadata region is one super page, three bit masks
//! and one metadata page per cluster, rounded up to whole clusters.
//!
//! Inside that region the sim keeps its own format:
//! - bytes 0..4096: an immutable *anchor* (magic, cluster size, slot size, CRC),
//!   written once when the lvstore is created;
//! - two *slots* after it, each a header (magic, sequence number, payload
//!   length, payload CRC, header CRC) followed by the JSON-encoded lvstore
//!   metadata. Updates alternate slots, so a torn write never destroys the
//!   last good copy; loading picks the valid slot with the highest sequence.

use crate::bdev::{Bdev, IoError, IoResult};

/// SPDK's metadata page size.
pub const MD_PAGE: u64 = 4096;
/// Size of `struct spdk_bs_md_mask`'s header (packed: type u8 + length u32).
const MASK_HEADER: u64 = 5;
const ANCHOR_MAGIC: &[u8; 16] = b"SHORTHORN-LVS-01";
const SLOT_MAGIC: &[u8; 8] = b"SHLVSLOT";
const SLOT_HEADER: usize = 8 + 8 + 8 + 4 + 4;

/// Space accounting of one lvstore, as SPDK computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Clusters on the whole device.
    pub total_clusters: u64,
    /// Clusters taken by metadata at the front of the device.
    pub md_clusters: u64,
    /// Largest cluster count the used-cluster mask can describe (limits grow).
    pub max_clusters: u64,
}

fn mask_pages(bits: u64) -> u64 {
    (MASK_HEADER + bits.div_ceil(8)).div_ceil(MD_PAGE)
}

/// SPDK's blobstore layout for a device of `dev_bytes` with `cluster_size`
/// clusters; `None` when SPDK would refuse (no cluster, or metadata too large).
pub fn geometry(dev_bytes: u64, cluster_size: u64) -> Option<Geometry> {
    let total_clusters = dev_bytes / cluster_size;
    let md_len = total_clusters; // num_md_pages_per_cluster_ratio = 100
    if total_clusters == 0 || md_len == 0 {
        return None;
    }
    let page_mask = mask_pages(md_len);
    let cluster_mask = mask_pages(total_clusters).max(mask_pages(md_len));
    let blobid_mask = mask_pages(md_len);
    let md_pages = 1 + page_mask + cluster_mask + blobid_mask + md_len;
    let md_clusters = (md_pages * MD_PAGE).div_ceil(cluster_size);
    if md_clusters > total_clusters {
        return None;
    }
    Some(Geometry {
        total_clusters,
        md_clusters,
        max_clusters: (cluster_mask * MD_PAGE - MASK_HEADER) * 8,
    })
}

/// The immutable anchor: enough to find the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// Cluster size in bytes.
    pub cluster_size: u64,
    /// Bytes per slot (header + payload capacity).
    pub slot_bytes: u64,
}

impl Anchor {
    /// The anchor for an lvstore whose metadata region is `md_bytes` long.
    pub fn for_region(cluster_size: u64, md_bytes: u64) -> Self {
        let slot_bytes = (md_bytes.saturating_sub(MD_PAGE) / 2) / MD_PAGE * MD_PAGE;
        Self {
            cluster_size,
            slot_bytes,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; MD_PAGE as usize];
        b[..16].copy_from_slice(ANCHOR_MAGIC);
        b[16..24].copy_from_slice(&self.cluster_size.to_le_bytes());
        b[24..32].copy_from_slice(&self.slot_bytes.to_le_bytes());
        let crc = crc32(&b[..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < 36 || &b[..16] != ANCHOR_MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes(b[32..36].try_into().ok()?);
        if crc != crc32(&b[..32]) {
            return None;
        }
        Some(Self {
            cluster_size: u64::from_le_bytes(b[16..24].try_into().ok()?),
            slot_bytes: u64::from_le_bytes(b[24..32].try_into().ok()?),
        })
    }

    fn slot_offset(&self, seq: u64) -> u64 {
        MD_PAGE + (seq % 2) * self.slot_bytes
    }
}

/// Writes a fresh anchor and invalidates both slots.
pub async fn format(base: &dyn Bdev, anchor: &Anchor) -> IoResult<()> {
    let zero = vec![0u8; MD_PAGE as usize];
    base.write(anchor.slot_offset(0), &zero).await?;
    base.write(anchor.slot_offset(1), &zero).await?;
    base.write(0, &anchor.encode()).await?;
    base.flush().await
}

/// Destroys the anchor, so the device no longer holds an lvstore.
pub async fn wipe(base: &dyn Bdev) -> IoResult<()> {
    base.write(0, &vec![0u8; MD_PAGE as usize]).await?;
    base.flush().await
}

/// Writes `payload` as generation `seq` into its slot and makes it durable.
/// Fails with ENOSPC when the payload does not fit the slot.
pub async fn write_slot(
    base: &dyn Bdev,
    anchor: &Anchor,
    seq: u64,
    payload: &[u8],
) -> IoResult<()> {
    let len = SLOT_HEADER + payload.len();
    if len as u64 > anchor.slot_bytes {
        return Err(IoError::ENOSPC);
    }
    let padded = (len as u64).div_ceil(MD_PAGE) * MD_PAGE;
    let mut b = vec![0u8; usize::try_from(padded).map_err(|_| IoError::EINVAL)?];
    b[..8].copy_from_slice(SLOT_MAGIC);
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    b[24..28].copy_from_slice(&crc32(payload).to_le_bytes());
    let hcrc = crc32(&b[..28]);
    b[28..32].copy_from_slice(&hcrc.to_le_bytes());
    b[SLOT_HEADER..len].copy_from_slice(payload);
    base.write(anchor.slot_offset(seq), &b).await?;
    base.flush().await
}

/// Reads the anchor and the newest valid slot: `(anchor, seq, payload)`.
/// `Ok(None)` when the device holds no lvstore.
pub async fn read_latest(base: &dyn Bdev) -> IoResult<Option<(Anchor, u64, Vec<u8>)>> {
    if base.size_bytes() < MD_PAGE {
        return Ok(None);
    }
    let Some(anchor) = Anchor::decode(&base.read(0, MD_PAGE).await?) else {
        return Ok(None);
    };
    let mut best: Option<(u64, Vec<u8>)> = None;
    for which in 0..2u64 {
        let off = anchor.slot_offset(which);
        if off + anchor.slot_bytes > base.size_bytes() || anchor.slot_bytes < MD_PAGE {
            continue;
        }
        let head = base.read(off, MD_PAGE).await?;
        let Some((seq, len, pcrc)) = decode_slot_header(&head) else {
            continue;
        };
        if seq % 2 != which || SLOT_HEADER as u64 + len > anchor.slot_bytes {
            continue;
        }
        let total = (SLOT_HEADER as u64 + len).div_ceil(MD_PAGE) * MD_PAGE;
        let body = base.read(off, total).await?;
        let payload = body[SLOT_HEADER..SLOT_HEADER + len as usize].to_vec();
        if crc32(&payload) != pcrc {
            continue;
        }
        if best.as_ref().is_none_or(|(s, _)| seq > *s) {
            best = Some((seq, payload));
        }
    }
    Ok(best.map(|(seq, p)| (anchor, seq, p)))
}

fn decode_slot_header(b: &[u8]) -> Option<(u64, u64, u32)> {
    if b.len() < SLOT_HEADER || &b[..8] != SLOT_MAGIC {
        return None;
    }
    let hcrc = u32::from_le_bytes(b[28..32].try_into().ok()?);
    if hcrc != crc32(&b[..28]) {
        return None;
    }
    Some((
        u64::from_le_bytes(b[8..16].try_into().ok()?),
        u64::from_le_bytes(b[16..24].try_into().ok()?),
        u32::from_le_bytes(b[24..28].try_into().ok()?),
    ))
}

/// CRC-32 (IEEE), bitwise.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_recorded_spdk_counts() {
        // 256 MiB malloc, 4 MiB clusters: 63 data clusters (transcript a).
        let g = geometry(256 << 20, 4 << 20).map(|g| g.total_clusters - g.md_clusters);
        assert_eq!(g, Some(63));
        // 2 GiB aio, 1 MiB clusters: 2039; grown to 3 GiB: 3063 (same md).
        let g = geometry(2 << 30, 1 << 20).expect("geometry");
        assert_eq!(g.total_clusters - g.md_clusters, 2039);
        assert_eq!(3072 - g.md_clusters, 3063);
        // 2 GiB, 4 MiB clusters: 511 (transcript k, target B).
        let g = geometry(2 << 30, 4 << 20).map(|g| g.total_clusters - g.md_clusters);
        assert_eq!(g, Some(511));
        // Cluster larger than the device: refused.
        assert_eq!(geometry(32 << 20, 64 << 20), None);
    }

    #[test]
    fn crc32_known_vector() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
