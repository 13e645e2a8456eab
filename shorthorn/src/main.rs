//! `shorthorn`: one binary for every Shorthorn role.
//!
//! - `controller`: the CSI Identity and Controller services.
//! - `node`: the CSI Node service and the node agent.
//! - `sim`: one simulated spdk_tgt (a stand-in for tests and the local mode).
//! - `local`: the whole driver on one machine.
//! - `ctl`: an operator CLI against a running controller.

#![warn(missing_docs)]

mod bench;
mod cmd;
mod csi_steps;
mod ctl;
mod local;
mod logging;
mod signals;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shorthorn: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shorthorn: {e:#}");
            ExitCode::FAILURE
        }
    }
}
