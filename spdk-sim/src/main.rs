//! `spdk-sim --rpc-socket PATH --data-dir DIR`: one simulated spdk_tgt process.

use std::path::PathBuf;

use spdk_sim::{SimConfig, SimError};

fn parse_args() -> Result<SimConfig, SimError> {
    let mut rpc_socket = None;
    let mut data_dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rpc-socket" | "-r" => rpc_socket = args.next().map(PathBuf::from),
            "--data-dir" => data_dir = args.next().map(PathBuf::from),
            other => return Err(SimError::Usage(format!("unknown argument {other}"))),
        }
    }
    Ok(SimConfig {
        rpc_socket: rpc_socket.ok_or_else(|| SimError::Usage("--rpc-socket is required".into()))?,
        data_dir: data_dir.ok_or_else(|| SimError::Usage("--data-dir is required".into()))?,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match spdk_sim::run(config, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spdk-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
