//! Command-line arguments (clap) and the mapping of outcomes to exit codes.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "hamstr",
    version,
    about = "Gather data from many HTTP APIs into one store"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Report every error and warning in a pipeline file
    Check {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
        format: CheckFormat,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckFormat {
    Human,
    Json,
}

/// How a command ended, as an exit code.
pub enum Outcome {
    Ok,
    /// Errors in the pipeline, or a run that did not deliver everything.
    Failed,
    /// Bad usage or an I/O problem.
    Usage,
}

impl Outcome {
    pub fn code(self) -> i32 {
        match self {
            Outcome::Ok => 0,
            Outcome::Failed => 1,
            Outcome::Usage => 2,
        }
    }
}
