//! Process signals that ask a long-running role to stop.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves on the first SIGINT or SIGTERM.
///
/// If a handler cannot be installed the future never resolves for that
/// signal; the other one still works, and SIGKILL always does.
pub async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let term_fut = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let int_fut = async {
        match int.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = term_fut => tracing::info!("SIGTERM received; shutting down"),
        () = int_fut => tracing::info!("SIGINT received; shutting down"),
    }
}
