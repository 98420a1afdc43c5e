//! `pgwardenctl policy ...`: tools for policy authors. None of them reads the agent's
//! configuration or talks to the cluster; they work on component and trace files, with the
//! agent's own policy host (same engine, limits and import allow-list).
//!
//! - `new`: a policy crate from the template embedded in the binary (`template/`).
//! - `check`: load a component as the agent would, describe it, make one sample call.
//! - `test`: replay a recorded trace through a component.
//! - `diff`: replay a trace through two components; show where they decide otherwise.
//!
//! Exit status: 0 fine; 1 the command ran and found a problem (`check`: the sample call
//! failed; `test`: a call failed and the default decided; `diff --exit-code`: the policies
//! decide differently); 2 it could not run (bad arguments, unreadable file, refused
//! component, ...), with the error on stderr.

mod check;
mod diff;
mod new;
mod render;
mod replay;
mod source;
mod test;

use std::process::ExitCode;

pub use check::CheckArgs;
pub use diff::DiffArgs;
pub use new::NewArgs;
pub use source::{LimitArgs, DEFAULT_WORD};
pub use test::TestArgs;

/// Exit status of a command that ran and found a problem.
const FOUND_PROBLEM: u8 = 1;
/// Exit status of a command that could not run.
const COULD_NOT_RUN: u8 = 2;

/// The `policy` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Create a policy crate (Cargo.toml, src/lib.rs with tests, .cargo/config.toml, README)
    /// from the template built into pgwardenctl.
    New(NewArgs),
    /// Load a component as the agent would; print its metadata, contract version, size,
    /// sha256, imports and exports; make one sample call.
    Check(CheckArgs),
    /// Replay a recorded trace through a component and print every decision, whether the
    /// policy failed, and whether the trace recorded the same decision. Exit status 1 when a
    /// call failed.
    Test(TestArgs),
    /// Replay a trace through two components and print the calls on which they decide
    /// differently. Exit status 0 either way, unless --exit-code.
    Diff(DiffArgs),
}

/// Run a `policy` subcommand; errors are printed here (with their causes), and the exit
/// status is as the module documents.
pub fn run(command: &PolicyCommand) -> ExitCode {
    let result = match command {
        PolicyCommand::New(args) => new::run(args),
        PolicyCommand::Check(args) => check::run(args),
        PolicyCommand::Test(args) => test::run(args),
        PolicyCommand::Diff(args) => diff::run(args),
    };
    match result {
        Ok(status) => status,
        Err(error) => {
            eprintln!("error: {}", chain(&error));
            ExitCode::from(COULD_NOT_RUN)
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the message already
/// carries (several errors print their source in their own message).
fn chain(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}
