//! Full rebuild of one slot: copies every block from a healthy leg in
//! windows, honouring `process_window_size_kb` and `process_max_bandwidth_mb_sec`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::volume::Raid;
use crate::bdev::Bdev;
use crate::nvmf::lock;

/// One end of a rebuild copy: slot, bdev and byte offset of its data.
struct End {
    slot: usize,
    bdev: Arc<dyn Bdev>,
    offset: u64,
}

/// What one window copies between.
struct Window {
    source: Option<End>,
    target: End,
    block_size: u64,
}

/// The legs one window copies between, or `None` when the process was cancelled.
fn window_legs(raid: &Raid, generation: u64) -> Option<Window> {
    let st = lock(&raid.st);
    if st.deleted {
        return None;
    }
    let p = st.process.as_ref().filter(|p| p.generation == generation)?;
    let bs = u64::from(st.block_size.max(1));
    let t = st.slots.get(p.slot)?;
    let target = End {
        slot: p.slot,
        bdev: t.bdev.clone()?,
        offset: t.data_offset * bs,
    };
    let source = st
        .slots
        .iter()
        .enumerate()
        .filter(|(i, s)| *i != p.slot && s.configured)
        .find_map(|(i, s)| {
            Some(End {
                slot: i,
                bdev: s.bdev.clone()?,
                offset: s.data_offset * bs,
            })
        });
    Some(Window {
        source,
        target,
        block_size: bs,
    })
}

/// Runs the rebuild with this generation until done or cancelled.
pub async fn run(raid: Arc<Raid>, generation: u64) {
    let started = Instant::now();
    let total = lock(&raid.st).num_blocks;
    let mut done = 0u64;
    tracing::info!(raid = %raid.name, total, "rebuild started");
    while done < total {
        let (window_kb, max_mb) = match raid.sim.upgrade() {
            Some(sim) => {
                let o = lock(&sim.raid.options);
                (o.process_window_size_kb, o.process_max_bandwidth_mb_sec)
            }
            None => return,
        };
        let copied = {
            let _exclusive = raid.io_lock.write().await;
            let Some(w) = window_legs(&raid, generation) else {
                tracing::info!(raid = %raid.name, "rebuild cancelled");
                return;
            };
            let Some(source) = w.source else {
                tracing::warn!(raid = %raid.name, "rebuild has no source leg left");
                raid.fail_leg(w.target.slot, &w.target.bdev);
                return;
            };
            let bs = w.block_size;
            let window = (window_kb * 1024 / bs).max(1);
            let n = window.min(total - done);
            let data = match source.bdev.read(source.offset + done * bs, n * bs).await {
                Ok(d) => d,
                Err(_) => {
                    raid.fail_leg(source.slot, &source.bdev);
                    continue;
                }
            };
            if w.target
                .bdev
                .write(w.target.offset + done * bs, &data)
                .await
                .is_err()
            {
                raid.fail_leg(w.target.slot, &w.target.bdev);
                return;
            }
            n
        };
        done += copied;
        {
            let mut st = lock(&raid.st);
            match st.process.as_mut().filter(|p| p.generation == generation) {
                Some(p) => p.blocks = done,
                None => return,
            }
        }
        let bs = u64::from(lock(&raid.st).block_size.max(1));
        if max_mb > 0 {
            let due =
                Duration::from_secs_f64((done * bs) as f64 / (max_mb as f64 * 1024.0 * 1024.0));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        } else {
            tokio::task::yield_now().await;
        }
    }
    {
        let mut st = lock(&raid.st);
        if st
            .process
            .as_ref()
            .is_some_and(|p| p.generation == generation)
        {
            st.process = None;
        } else {
            return;
        }
    }
    raid.write_superblocks().await;
    tracing::info!(raid = %raid.name, "rebuild finished");
}
