//! A writer thread that does small synchronous writes (4 KiB write +
//! fdatasync) to a file on a staged volume and remembers the longest time
//! between two completed writes: how long I/O was held, as an application
//! sees it.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};

/// Bytes per write.
const WRITE_BYTES: usize = 4096;
/// The file is rewritten in a ring of this many writes.
const RING: u64 = 256;

/// What the writer saw.
#[derive(Debug, Clone, Copy)]
pub struct WriterReport {
    /// Writes completed.
    pub writes: u64,
    /// Longest time between two completions (or from the last completion to the stop).
    pub longest_gap: Duration,
}

/// A running writer.
pub struct Writer {
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    handle: JoinHandle<anyhow::Result<WriterReport>>,
}

impl Writer {
    /// Starts writing to `file` (created if needed).
    pub fn start(file: &Path) -> anyhow::Result<Self> {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(file)
            .with_context(|| format!("opening {}", file.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let measuring = Arc::new(AtomicBool::new(false));
        let (stop2, writes2, measuring2) = (stop.clone(), writes.clone(), measuring.clone());
        let handle = std::thread::Builder::new()
            .name("bench-writer".into())
            .spawn(move || {
                let block = [0x5au8; WRITE_BYTES];
                let mut last = Instant::now();
                let mut longest = Duration::ZERO;
                let mut n: u64 = 0;
                while !stop2.load(Ordering::Relaxed) {
                    f.seek(SeekFrom::Start((n % RING) * WRITE_BYTES as u64))?;
                    f.write_all(&block)?;
                    f.sync_data()?;
                    let now = Instant::now();
                    if measuring2.load(Ordering::Relaxed) {
                        longest = longest.max(now - last);
                    }
                    last = now;
                    n += 1;
                    writes2.store(n, Ordering::Relaxed);
                }
                longest = longest.max(last.elapsed());
                Ok(WriterReport {
                    writes: n,
                    longest_gap: longest,
                })
            })
            .context("starting the writer thread")?;
        Ok(Self {
            stop,
            measuring,
            writes,
            handle,
        })
    }

    /// Waits (bounded) until the writer has completed `n` writes, then
    /// starts measuring, so the window starts with I/O flowing.
    pub async fn warm_up(&self, n: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.writes.load(Ordering::Relaxed) < n {
            if self.handle.is_finished() || Instant::now() > deadline {
                anyhow::bail!("the writer did not complete {n} writes");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.measuring.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Stops the writer and returns what it saw.
    pub async fn finish(self) -> anyhow::Result<WriterReport> {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle;
        tokio::task::spawn_blocking(move || handle.join())
            .await?
            .map_err(|_| anyhow!("the writer thread panicked"))?
    }
}
