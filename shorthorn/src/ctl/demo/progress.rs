//! Step-by-step progress for the demo: `[3/9]` prefixes, a spinner and a
//! check mark on a terminal, one plain line per event otherwise.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Progress of a fixed number of steps.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    total: usize,
    tty: bool,
}

impl Progress {
    /// Progress over `total` steps; animated when stdout is a terminal.
    pub fn new(total: usize) -> Self {
        Self {
            total,
            tty: std::io::stdout().is_terminal(),
        }
    }

    /// Announces step `n` (1-based).
    pub fn start(&self, n: usize, title: impl Into<String>) -> Step {
        let prefix = format!("[{n}/{}]", self.total);
        let title = title.into();
        let stopped = Arc::new(Mutex::new(false));
        if self.tty {
            let (prefix, title, stopped) = (prefix.clone(), title.clone(), stopped.clone());
            tokio::spawn(async move {
                for frame in FRAMES.iter().cycle() {
                    {
                        // Checked under the lock the final line is printed
                        // under, so no frame can follow it.
                        let stopped = stopped.lock().unwrap_or_else(PoisonError::into_inner);
                        if *stopped {
                            return;
                        }
                        print!("\r\x1b[2K{prefix} {frame} {title}");
                        let _ = std::io::stdout().flush();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        } else {
            println!("{prefix} {title}");
        }
        Step {
            prefix,
            title,
            tty: self.tty,
            stopped,
        }
    }
}

/// A step in progress; end it with [`Step::done`], [`Step::skipped`] or
/// [`Step::failed`].
#[derive(Debug)]
pub struct Step {
    prefix: String,
    title: String,
    tty: bool,
    /// Set once the step's last line is printed; stops the spinner.
    stopped: Arc<Mutex<bool>>,
}

impl Step {
    /// The step succeeded; `detail` says what it produced.
    pub fn done(self, detail: &str) {
        self.finish("✓", "done", detail);
    }

    /// The step was not run, and why.
    pub fn skipped(self, reason: &str) {
        self.finish("-", "skipped", reason);
    }

    /// The step failed.
    pub fn failed(self, error: &anyhow::Error) {
        self.finish("✗", "FAILED", &format!("{error:#}"));
    }

    fn finish(self, mark: &str, word: &str, detail: &str) {
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        *stopped = true;
        let pad = " ".repeat(self.prefix.len());
        if self.tty {
            let sep = if detail.is_empty() { "" } else { ": " };
            let text = if word == "done" {
                format!("{}{sep}{detail}", self.title)
            } else {
                format!("{}: {word}{sep}{detail}", self.title)
            };
            let colour = match word {
                "done" => "\x1b[32m",
                "FAILED" => "\x1b[31m",
                _ => "\x1b[33m",
            };
            println!("\r\x1b[2K{} {colour}{mark}\x1b[0m {text}", self.prefix);
        } else if detail.is_empty() {
            println!("{pad} {word}");
        } else {
            println!("{pad} {word}: {detail}");
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*stopped && self.tty {
            println!();
        }
        *stopped = true;
    }
}
