//! One raid1 volume: its base-bdev slots, state, superblock layout and I/O
//! (mirrored writes, reads from one healthy leg, dropping legs that fail).

use std::sync::{Arc, Mutex, Weak};

use futures::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::bdev::{Bdev, IoError, IoResult};
use crate::nvmf::lock;
use crate::sim::Sim;

/// Module name under which a raid claims its base bdevs.
pub const CLAIM_MODULE: &str = "raid";
/// Least bytes reserved at the start of each base bdev for the superblock
/// (SPDK's `RAID_BDEV_MIN_DATA_OFFSET_SIZE`).
const SUPERBLOCK_REGION: u64 = 1 << 20;

/// Lifecycle state as `bdev_raid_get_bdevs` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Waiting for base bdevs.
    Configuring,
    /// Serving I/O.
    Online,
    /// No operational base bdev is left.
    Offline,
}

impl RunState {
    /// SPDK's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Configuring => "configuring",
            RunState::Online => "online",
            RunState::Offline => "offline",
        }
    }
}

/// One base-bdev slot.
#[derive(Clone)]
pub struct Slot {
    /// Name the user gave (kept for a missing bdev); `None` for an empty slot.
    pub name: Option<String>,
    /// The claimed bdev, once present.
    pub bdev: Option<Arc<dyn Bdev>>,
    /// UUID of the bdev (all zero when empty or missing).
    pub uuid: Uuid,
    /// A member a superblock names but examine has not found yet (its UUID).
    pub expected: Option<Uuid>,
    /// The data offset the superblock keeps for this slot once emptied.
    pub sb_offset: u64,
    /// The member UUID the superblock keeps for this slot once emptied.
    pub sb_uuid: Uuid,
    /// Emptied because its I/O failed (the superblock says `failed`).
    pub failed: bool,
    /// Whether the bdev is part of the array.
    pub configured: bool,
    /// First data block on the base bdev.
    pub data_offset: u64,
    /// Data blocks on the base bdev.
    pub data_size: u64,
}

/// A background process (only rebuild for raid1).
#[derive(Clone)]
pub struct Process {
    /// Slot being rebuilt.
    pub slot: usize,
    /// Name of the bdev being rebuilt.
    pub target: String,
    /// Blocks done.
    pub blocks: u64,
    /// Distinguishes this process from cancelled ones.
    pub generation: u64,
}

/// Mutable state of a raid.
pub struct RaidSt {
    /// Raid UUID (zero until configured unless given).
    pub uuid: Uuid,
    /// Lifecycle state.
    pub state: RunState,
    /// Base-bdev slots.
    pub slots: Vec<Slot>,
    /// Block size (from the base bdevs).
    pub block_size: u32,
    /// Size of the raid in blocks.
    pub num_blocks: u64,
    /// Running rebuild, if any.
    pub process: Option<Process>,
    /// Counter for process generations.
    pub generation: u64,
    /// Set once deleted; background tasks stop.
    pub deleted: bool,
    /// Superblock sequence number, raised on every superblock write.
    pub seq: u64,
}

/// One raid1 volume.
pub struct Raid {
    /// Raid bdev name.
    pub name: String,
    /// Whether a superblock is kept on each base bdev.
    pub superblock: bool,
    /// The owning process.
    pub sim: Weak<Sim>,
    /// Mutable state; never held across an await.
    pub st: Mutex<RaidSt>,
    /// Writes hold it shared; a rebuild window holds it exclusively, so no
    /// write can slip between a window's read and its copy.
    pub io_lock: tokio::sync::RwLock<()>,
}

/// A base leg picked for one I/O.
struct Leg {
    slot: usize,
    bdev: Arc<dyn Bdev>,
    offset: u64,
    rebuilding: bool,
}

impl Raid {
    /// A raid in the configuring state over `names`.
    pub fn new(
        sim: Weak<Sim>,
        name: String,
        names: Vec<String>,
        superblock: bool,
        uuid: Option<Uuid>,
    ) -> Self {
        let slots = names
            .into_iter()
            .map(|n| Slot {
                name: Some(n),
                bdev: None,
                uuid: Uuid::nil(),
                expected: None,
                sb_offset: 0,
                sb_uuid: Uuid::nil(),
                failed: false,
                configured: false,
                data_offset: 0,
                data_size: 0,
            })
            .collect();
        Self {
            name,
            superblock,
            sim,
            st: Mutex::new(RaidSt {
                uuid: uuid.unwrap_or_else(Uuid::nil),
                state: RunState::Configuring,
                slots,
                block_size: 0,
                num_blocks: 0,
                process: None,
                generation: 0,
                deleted: false,
                seq: 0,
            }),
            io_lock: tokio::sync::RwLock::new(()),
        }
    }

    /// Data offset in blocks on `base`: with a superblock, 1 MiB rounded up
    /// to the base's optimal I/O boundary (an lvol's cluster), as SPDK does;
    /// without one, 0.
    pub fn data_offset_for(&self, base: &dyn Bdev) -> u64 {
        if !self.superblock {
            return 0;
        }
        let off = SUPERBLOCK_REGION.div_ceil(u64::from(base.block_size().max(1)));
        match base.optimal_io_boundary() {
            0 => off,
            b => off.div_ceil(b) * b,
        }
    }

    /// Fills the slots from the configured bases and computes the size.
    /// Fails with -22 when block sizes differ or a base is too small.
    pub fn configure_layout(&self) -> Result<(), IoError> {
        let mut st = lock(&self.st);
        let mut bs = 0u32;
        for s in &st.slots {
            let b = s.bdev.as_ref().ok_or(IoError::EINVAL)?;
            if bs != 0 && b.block_size() != bs {
                return Err(IoError::EINVAL);
            }
            bs = b.block_size();
        }
        let mut size = u64::MAX;
        for s in st.slots.iter_mut() {
            let b = s.bdev.clone().ok_or(IoError::EINVAL)?;
            let off = self.data_offset_for(b.as_ref());
            let blocks = b.num_blocks();
            if blocks <= off {
                return Err(IoError::EINVAL);
            }
            s.uuid = b.uuid();
            s.configured = true;
            s.data_offset = off;
            s.sb_offset = off;
            s.sb_uuid = s.uuid;
            s.data_size = blocks - off;
            size = size.min(s.data_size);
        }
        for s in st.slots.iter_mut() {
            s.data_size = size;
        }
        st.block_size = bs;
        st.num_blocks = size;
        if st.uuid.is_nil() {
            st.uuid = Uuid::new_v4();
        }
        st.state = RunState::Online;
        Ok(())
    }

    /// The superblock as it stands now, with a raised sequence number: a
    /// present, configured member that is not being rebuilt is `configured`;
    /// every other slot keeps its last member's UUID as `missing`, or `failed`
    /// when its leg was dropped after an I/O error.
    pub fn next_superblock(&self) -> super::superblock::Superblock {
        use super::superblock::{SbSlot, SlotState, Superblock};
        let mut st = lock(&self.st);
        st.seq += 1;
        let target = st.process.as_ref().map(|p| p.slot);
        let slots = st
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let live = s.configured && s.bdev.is_some() && target != Some(i);
                SbSlot {
                    uuid: if live { s.uuid } else { s.sb_uuid },
                    state: if live {
                        SlotState::Configured
                    } else if s.failed {
                        SlotState::Failed
                    } else {
                        SlotState::Missing
                    },
                    data_offset: if live { s.data_offset } else { s.sb_offset },
                    data_size: s.data_size,
                }
            })
            .collect();
        Superblock {
            seq: st.seq,
            uuid: st.uuid,
            name: self.name.clone(),
            block_size: st.block_size,
            raid_size: st.num_blocks,
            slots,
        }
    }

    /// Writes the superblock (with a raised sequence number) to every
    /// configured member (best effort, as a member that fails is dropped).
    pub async fn write_superblocks(&self) {
        if !self.superblock {
            return;
        }
        let sb = self.next_superblock();
        let bdevs: Vec<Arc<dyn Bdev>> = {
            let st = lock(&self.st);
            let target = st.process.as_ref().map(|p| p.slot);
            st.slots
                .iter()
                .enumerate()
                .filter(|(i, s)| s.configured && target != Some(*i))
                .filter_map(|(_, s)| s.bdev.clone())
                .collect()
        };
        for b in bdevs {
            let block = sb.encode(b.block_size());
            if let Err(e) = b.write(0, &block).await {
                tracing::warn!(raid = %self.name, base = %b.name(), ?e, "superblock write failed");
            }
        }
    }

    fn legs(&self, include_rebuilding: bool) -> Vec<Leg> {
        let st = lock(&self.st);
        let target = st.process.as_ref().map(|p| p.slot);
        let bs = u64::from(st.block_size);
        st.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.configured)
            .filter_map(|(i, s)| {
                let rebuilding = target == Some(i);
                if rebuilding && !include_rebuilding {
                    return None;
                }
                Some(Leg {
                    slot: i,
                    bdev: s.bdev.clone()?,
                    offset: s.data_offset * bs,
                    rebuilding,
                })
            })
            .collect()
    }

    /// Drops a leg whose I/O failed, as SPDK does, and releases its claim.
    pub fn fail_leg(&self, slot: usize, bdev: &Arc<dyn Bdev>) {
        let released = {
            let mut st = lock(&self.st);
            let Some(s) = st.slots.get_mut(slot) else {
                return;
            };
            if !s.bdev.as_ref().is_some_and(|b| Arc::ptr_eq(b, bdev)) {
                return;
            }
            tracing::warn!(raid = %self.name, base = %bdev.name(), "base bdev failed; dropping it");
            let released = Self::empty_slot(&mut st, slot);
            if let Some(s) = st.slots.get_mut(slot) {
                s.failed = true;
            }
            released
        };
        if let (Some(name), Some(sim)) = (released, self.sim.upgrade()) {
            lock(&sim.bdevs).release(&name);
        }
        self.rewrite_superblock_soon();
    }

    /// Writes the superblock from a task of its own (for paths that cannot
    /// wait, such as a failing I/O), as SPDK records a dropped member.
    pub fn rewrite_superblock_soon(&self) {
        if !self.superblock {
            return;
        }
        let Some(sim) = self.sim.upgrade() else {
            return;
        };
        let Some(raid) = lock(&sim.raid.raids).get(&self.name).cloned() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { raid.write_superblocks().await });
        }
    }

    /// Empties a slot; returns the registry name of the bdev whose claim to release.
    pub fn empty_slot(st: &mut RaidSt, slot: usize) -> Option<String> {
        let s = st.slots.get_mut(slot)?;
        let name = s.bdev.take().map(|b| b.name());
        s.name = None;
        if s.configured {
            s.sb_offset = s.data_offset;
            s.sb_uuid = s.uuid;
        }
        s.uuid = Uuid::nil();
        s.expected = None;
        s.configured = false;
        s.failed = false;
        // SPDK clears the offset so a new member gets its own.
        s.data_offset = 0;
        if st.process.as_ref().is_some_and(|p| p.slot == slot) {
            st.process = None;
        }
        if st.state == RunState::Online && !st.slots.iter().any(|s| s.configured) {
            st.state = RunState::Offline;
        }
        name
    }

    /// Follows base bdev growth as SPDK's raid1 does (`raid1_resize` on a
    /// base bdev resize event): the raid takes the smallest data area of its
    /// present base bdevs. Only growth is applied (SPDK refuses to shrink an
    /// open bdev). Returns the size in blocks.
    pub fn follow_base_resize(&self) -> u64 {
        let mut st = lock(&self.st);
        if st.state != RunState::Online {
            return st.num_blocks;
        }
        let smallest = st
            .slots
            .iter()
            .filter(|s| s.configured)
            .filter_map(|s| {
                s.bdev
                    .as_ref()
                    .map(|b| b.num_blocks().saturating_sub(s.data_offset))
            })
            .min();
        if let Some(blocks) = smallest.filter(|b| *b > st.num_blocks) {
            st.num_blocks = blocks;
            for s in st.slots.iter_mut() {
                s.data_size = blocks;
            }
        }
        st.num_blocks
    }

    fn check(&self, offset: u64, len: u64) -> IoResult<()> {
        self.follow_base_resize();
        let st = lock(&self.st);
        let bs = u64::from(st.block_size.max(1));
        let end = offset.checked_add(len).ok_or(IoError::EINVAL)?;
        if st.state != RunState::Online {
            return Err(IoError::ENXIO);
        }
        if !offset.is_multiple_of(bs) || !len.is_multiple_of(bs) || end > st.num_blocks * bs {
            return Err(IoError::EINVAL);
        }
        Ok(())
    }

    /// `memory_domains` of the raid: those of its configured members, in
    /// slot order (SPDK's `raid_bdev_get_memory_domains`).
    pub fn memory_domains(&self) -> Vec<Value> {
        let bases: Vec<Arc<dyn Bdev>> = lock(&self.st)
            .slots
            .iter()
            .filter(|s| s.configured)
            .filter_map(|s| s.bdev.clone())
            .collect();
        bases
            .iter()
            .filter_map(|b| match b.extra_info().get("memory_domains") {
                Some(Value::Array(d)) => Some(d.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Reads from the first healthy leg, dropping legs that fail.
    pub async fn read(&self, offset: u64, len: u64) -> IoResult<Vec<u8>> {
        self.check(offset, len)?;
        loop {
            let Some(leg) = self.legs(false).into_iter().next() else {
                return Err(IoError::EIO);
            };
            match leg.bdev.read(leg.offset + offset, len).await {
                Ok(d) => return Ok(d),
                Err(_) => self.fail_leg(leg.slot, &leg.bdev),
            }
        }
    }

    /// Runs `op` on every leg (including a rebuild target); succeeds if a
    /// non-rebuilding leg succeeded. Legs that fail are dropped.
    async fn mirror<'a, F, Fut>(&self, op: F) -> IoResult<()>
    where
        F: Fn(Arc<dyn Bdev>, u64) -> Fut,
        Fut: std::future::Future<Output = IoResult<()>> + 'a,
    {
        let _shared = self.io_lock.read().await;
        let legs = self.legs(true);
        let results = join_all(legs.iter().map(|l| op(l.bdev.clone(), l.offset))).await;
        let mut ok = false;
        for (leg, r) in legs.iter().zip(results) {
            match r {
                Ok(()) => ok |= !leg.rebuilding,
                Err(_) => self.fail_leg(leg.slot, &leg.bdev),
            }
        }
        if ok {
            Ok(())
        } else {
            Err(IoError::EIO)
        }
    }

    /// Mirrors a write.
    pub async fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        self.check(offset, data.len() as u64)?;
        self.mirror(|b, base| async move { b.write(base + offset, data).await })
            .await
    }

    /// Mirrors an unmap.
    pub async fn unmap(&self, offset: u64, len: u64) -> IoResult<()> {
        self.check(offset, len)?;
        self.mirror(|b, base| async move { b.unmap(base + offset, len).await })
            .await
    }

    /// Flushes every leg.
    pub async fn flush(&self) -> IoResult<()> {
        self.mirror(|b, _| async move { b.flush().await }).await
    }

    /// The raid's JSON as `bdev_raid_get_bdevs` shows it (with `name`) or
    /// as `driver_specific.raid` shows it (without).
    pub fn to_json(&self, with_name: bool) -> Value {
        let st = lock(&self.st);
        let discovered = st.slots.iter().filter(|s| s.bdev.is_some()).count();
        // While configuring, SPDK counts every slot it waits for.
        let operational = if st.state == RunState::Configuring {
            st.slots
                .iter()
                .filter(|s| s.name.is_some() || s.expected.is_some())
                .count()
        } else {
            discovered
        };
        let mut o = serde_json::Map::new();
        if with_name {
            o.insert("name".into(), json!(self.name));
        }
        o.insert("uuid".into(), json!(st.uuid.to_string()));
        o.insert("strip_size_kb".into(), json!(0));
        o.insert("state".into(), json!(st.state.as_str()));
        o.insert("raid_level".into(), json!("raid1"));
        o.insert("superblock".into(), json!(self.superblock));
        o.insert("num_base_bdevs".into(), json!(st.slots.len()));
        o.insert("num_base_bdevs_discovered".into(), json!(discovered));
        o.insert("num_base_bdevs_operational".into(), json!(operational));
        if let Some(p) = &st.process {
            let percent = (p.blocks * 100).checked_div(st.num_blocks).unwrap_or(0);
            o.insert(
                "process".into(),
                json!({"type": "rebuild", "target": p.target,
                       "progress": {"blocks": p.blocks, "percent": percent}}),
            );
        }
        let list: Vec<Value> = st
            .slots
            .iter()
            .map(|s| {
                json!({"name": s.name, "uuid": s.uuid.to_string(), "is_configured": s.configured,
                       "data_offset": s.data_offset, "data_size": s.data_size})
            })
            .collect();
        o.insert("base_bdevs_list".into(), Value::Array(list));
        Value::Object(o)
    }
}
