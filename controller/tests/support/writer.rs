//! A writer through a volume, as an application would use it: block after
//! block of changing content, each write's completion time recorded, so a
//! test can see when I/O stalled and when it flowed again, and what every
//! replica must hold once it stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spdk_client::SpdkClient;

use super::sim_write;

/// Blocks the writer cycles through (4 KiB each).
pub const WRITER_BLOCKS: u64 = 64;
/// Bytes the writer touches.
pub const WRITER_SPAN: u64 = WRITER_BLOCKS * 4096;

/// A running writer.
pub struct Writer {
    stop: Arc<AtomicBool>,
    done: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The content of write `i`.
fn block(i: u64) -> Vec<u8> {
    vec![(i % 251) as u8 + 1; 4096]
}

impl Writer {
    /// Writes through bdev `bdev` of `client` (e.g. an initiator playing the
    /// node's kernel) until stopped.
    pub fn start(client: SpdkClient, bdev: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let task = tokio::spawn({
            let (stop, done) = (stop.clone(), done.clone());
            async move {
                let mut i: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    sim_write(&client, &bdev, (i % WRITER_BLOCKS) * 4096, &block(i)).await;
                    done.lock().expect("done").push(Instant::now());
                    i += 1;
                }
            }
        });
        Self { stop, done, task }
    }

    /// Completion times so far.
    pub fn completions(&self) -> Vec<Instant> {
        self.done.lock().expect("done").clone()
    }

    /// Waits until a write completes after `after`; its completion time.
    pub async fn next_completion_after(&self, after: Instant, limit: Duration) -> Instant {
        let started = Instant::now();
        loop {
            if let Some(t) = self.completions().into_iter().find(|t| *t > after) {
                return t;
            }
            assert!(
                started.elapsed() < limit,
                "no write completed within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops after the write in flight; the bytes `[0, WRITER_SPAN)` of the
    /// volume must now hold.
    pub async fn stop(self) -> Vec<u8> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer");
        let n = self.done.lock().expect("done").len() as u64;
        let mut expected = vec![0u8; WRITER_SPAN as usize];
        for b in 0..WRITER_BLOCKS.min(n) {
            let last = b + (n - 1 - b) / WRITER_BLOCKS * WRITER_BLOCKS;
            expected[(b * 4096) as usize..((b + 1) * 4096) as usize].copy_from_slice(&block(last));
        }
        expected
    }
}
