//! nftproxy: the binary's entry point: parse the command line, set up logging, dispatch.
//!
//! Exit status: 0 ok, 1 diagnostics with `--strict`, 2 unusable input or bad flags.

mod addresses;
mod change_log;
mod cli;
mod collectors;
mod compile_cmd;
mod conntrack;
mod events;
mod http;
mod inputs;
mod instance_lock;
mod kernel;
mod kernel_target;
mod logging;
mod manifest_source;
mod memory;
mod metrics;
mod netlink;
mod run_cmd;
mod settings;
mod sources;
mod status;
mod sync;
mod sync_loop;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Exit status for unusable input (clap uses the same for bad flags).
const EXIT_UNUSABLE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = logging::init(cli.log_format) {
        eprintln!("error: {err:#}");
        return ExitCode::from(EXIT_UNUSABLE);
    }
    let result = match &cli.command {
        Command::Compile(args) => compile_cmd::run(args),
        Command::Run(args) => run_cmd::run(args),
        Command::Cleanup(args) => run_cmd::cleanup(args),
    };
    result.unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        ExitCode::from(EXIT_UNUSABLE)
    })
}
