//! raid superblocks: what each member of a raid with `superblock: true`
//! carries in its first block, and examine, which assembles raids from them
//! when a bdev appears (after a restart, or when a replica comes back).
//!
//! The fields are SPDK's (`struct raid_bdev_superblock`): a sequence number
//! raised on every write, the raid's UUID, name, block size and size, and one
//! entry per slot with the member's UUID, its state (configured, missing,
//! failed) and its data offset and size. The encoding is the sim's own (a
//! magic and JSON), so the sim reads back what the sim wrote.
//!
//! Examine follows `raid_bdev_examine_sb`:
//! - no raid with that UUID: a `configuring` raid is made from the
//!   superblock, waiting for every `configured` member; it claims this bdev
//!   if the superblock lists it as configured;
//! - a configuring raid with an older superblock: it is made again from the
//!   newer one (members whose copy is older are released);
//! - a member whose copy is older than the raid's is not added: it missed
//!   writes. (SPDK can re-add such a member into an online raid when its
//!   examine completes after the raid came online, starting a rebuild; which
//!   examine completes first is not determined there. On real spdk_tgt v25.09
//!   the removed member was measured left out, which is what the sim does.)
//! - once every configured member is there, the raid goes online, degraded
//!   if the superblock lists missing or failed slots.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::bdev::RaidBdev;
use super::volume::{Raid, RunState, Slot, CLAIM_MODULE};
use crate::bdev::Bdev;
use crate::nvmf::lock;
use crate::sim::Sim;

const MAGIC: &[u8; 8] = b"SPDKRAID";

/// State of one slot in a superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// A member holding every acknowledged write.
    Configured,
    /// Removed, or never added.
    Missing,
    /// Dropped after an I/O error.
    Failed,
}

/// One slot of a superblock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SbSlot {
    /// UUID of the member (kept when missing or failed).
    pub uuid: Uuid,
    /// Whether it holds the data.
    pub state: SlotState,
    /// First data block on the member.
    pub data_offset: u64,
    /// Data blocks on the member.
    pub data_size: u64,
}

/// A raid superblock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Superblock {
    /// Raised on every write; the newest copy wins.
    pub seq: u64,
    /// The raid's UUID.
    pub uuid: Uuid,
    /// The raid's name.
    pub name: String,
    /// Block size of the members.
    pub block_size: u32,
    /// Size of the raid in blocks.
    pub raid_size: u64,
    /// Slots in order.
    pub slots: Vec<SbSlot>,
}

impl Superblock {
    /// The first block of a member, `block_size` bytes.
    pub fn encode(&self, block_size: u32) -> Vec<u8> {
        let mut b = vec![0u8; block_size as usize];
        let body = serde_json::to_vec(self).unwrap_or_default();
        let len = body.len().min(b.len().saturating_sub(12));
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        b[12..12 + len].copy_from_slice(&body[..len]);
        b
    }

    /// The superblock in a member's first block, if it holds one.
    pub fn decode(block: &[u8]) -> Option<Self> {
        if block.len() < 12 || &block[..8] != MAGIC {
            return None;
        }
        let len = u32::from_le_bytes(block[8..12].try_into().ok()?) as usize;
        serde_json::from_slice(block.get(12..12 + len)?).ok()
    }
}

/// Reads the superblock of `bdev`, if any.
async fn read(bdev: &Arc<dyn Bdev>) -> Option<Superblock> {
    let bs = u64::from(bdev.block_size());
    if bs == 0 || bdev.num_blocks() == 0 {
        return None;
    }
    Superblock::decode(&bdev.read(0, bs).await.ok()?)
}

/// A configuring raid made from `sb`, waiting for its configured members.
fn from_superblock(sim: &Arc<Sim>, sb: &Superblock) -> Arc<Raid> {
    let raid = Raid::new(
        Arc::downgrade(sim),
        sb.name.clone(),
        Vec::new(),
        true,
        Some(sb.uuid),
    );
    {
        let mut st = lock(&raid.st);
        st.seq = sb.seq;
        st.block_size = sb.block_size;
        st.num_blocks = sb.raid_size;
        st.slots = sb
            .slots
            .iter()
            .map(|s| {
                let configured = s.state == SlotState::Configured;
                Slot {
                    name: None,
                    bdev: None,
                    uuid: if configured { s.uuid } else { Uuid::nil() },
                    expected: configured.then_some(s.uuid),
                    sb_offset: s.data_offset,
                    sb_uuid: s.uuid,
                    failed: s.state == SlotState::Failed,
                    configured: false,
                    data_offset: s.data_offset,
                    data_size: s.data_size,
                }
            })
            .collect();
    }
    Arc::new(raid)
}

/// Releases the claims a configuring raid holds and forgets it.
fn drop_configuring(sim: &Sim, raid: &Raid) -> Vec<String> {
    lock(&sim.raid.raids).remove(&raid.name);
    let names: Vec<String> = {
        let mut st = lock(&raid.st);
        st.deleted = true;
        st.slots
            .iter_mut()
            .filter_map(|s| s.bdev.take().map(|b| b.name()))
            .collect()
    };
    let mut reg = lock(&sim.bdevs);
    for n in &names {
        reg.release(n);
    }
    names
}

/// Examines `name` for a raid superblock; see the module docs.
pub async fn examine(sim: &Arc<Sim>, name: &str) {
    let bdev = {
        let reg = lock(&sim.bdevs);
        match reg.lookup(name) {
            Some(e) if e.claimed_by.is_none() => e.bdev.clone(),
            _ => return,
        }
    };
    let Some(sb) = read(&bdev).await else {
        return;
    };
    if sb.block_size != bdev.block_size() || sb.uuid.is_nil() {
        tracing::warn!(bdev = %name, "raid superblock does not fit this bdev; ignored");
        return;
    }
    let existing = lock(&sim.raid.raids)
        .values()
        .find(|r| lock(&r.st).uuid == sb.uuid)
        .cloned();
    let raid = match existing {
        Some(raid) => {
            let (seq, state) = {
                let st = lock(&raid.st);
                (st.seq, st.state)
            };
            if sb.seq < seq {
                tracing::info!(bdev = %name, raid = %raid.name, "superblock older than the raid's; not adding");
                return;
            }
            if sb.seq > seq {
                if state != RunState::Configuring {
                    tracing::warn!(bdev = %name, raid = %raid.name, "newer superblock but the raid is not configuring");
                    return;
                }
                let released = drop_configuring(sim, &raid);
                let newer = from_superblock(sim, &sb);
                lock(&sim.raid.raids).insert(newer.name.clone(), newer.clone());
                claim(sim, &newer, &bdev).await;
                for n in released {
                    Box::pin(examine(sim, &n)).await;
                }
                return;
            }
            raid
        }
        None => {
            if lock(&sim.raid.raids).contains_key(&sb.name) {
                tracing::warn!(bdev = %name, raid = %sb.name, "another raid has this name; superblock ignored");
                return;
            }
            let raid = from_superblock(sim, &sb);
            lock(&sim.raid.raids).insert(raid.name.clone(), raid.clone());
            tracing::info!(raid = %raid.name, bdev = %name, "raid found by examine");
            raid
        }
    };
    claim(sim, &raid, &bdev).await;
}

/// Claims `bdev` into the slot expecting it, and brings the raid online once
/// every expected member is there.
async fn claim(sim: &Arc<Sim>, raid: &Arc<Raid>, bdev: &Arc<dyn Bdev>) {
    let uuid = bdev.uuid();
    let slot = {
        let st = lock(&raid.st);
        if st.state != RunState::Configuring {
            return;
        }
        st.slots.iter().position(|s| s.expected == Some(uuid))
    };
    let Some(slot) = slot else {
        tracing::info!(bdev = %bdev.name(), raid = %raid.name, "not an active member; ignored");
        return;
    };
    let Ok(claimed) = lock(&sim.bdevs).claim(&bdev.name(), CLAIM_MODULE) else {
        return;
    };
    let complete = {
        let mut st = lock(&raid.st);
        if let Some(s) = st.slots.get_mut(slot) {
            s.name = Some(claimed.name());
            s.bdev = Some(claimed);
            s.expected = None;
            s.configured = true;
        }
        let done = st.slots.iter().all(|s| s.expected.is_none());
        if done {
            st.state = RunState::Online;
        }
        done
    };
    if complete {
        match lock(&sim.bdevs).register(Arc::new(RaidBdev(raid.clone()))) {
            Ok(_) => tracing::info!(raid = %raid.name, "raid online from its superblock"),
            Err(e) => tracing::warn!(raid = %raid.name, error = %e, "cannot register the raid"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_superblock_round_trips_through_a_block_and_garbage_is_none() {
        let sb = Superblock {
            seq: 3,
            uuid: Uuid::new_v4(),
            name: "vol".into(),
            block_size: 4096,
            raid_size: 3072,
            slots: vec![SbSlot {
                uuid: Uuid::new_v4(),
                state: SlotState::Missing,
                data_offset: 1024,
                data_size: 3072,
            }],
        };
        let block = sb.encode(4096);
        assert_eq!(block.len(), 4096);
        assert_eq!(Superblock::decode(&block), Some(sb));
        assert_eq!(Superblock::decode(&[0u8; 4096]), None);
    }
}
