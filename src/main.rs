//! The `hamstr` binary: parses arguments and hands each command to the library.

mod cli;

use clap::Parser;
use cli::{CheckFormat, Cli, Command, Outcome};
use std::io::IsTerminal;

fn main() {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Check { file, format } => check(&file, format),
    };
    std::process::exit(outcome.code());
}

fn check(file: &std::path::Path, format: CheckFormat) -> Outcome {
    let text = match hamstr::read_pipeline(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Usage;
        }
    };
    let checked = hamstr::check::check(&file.display().to_string(), &text, &|k| {
        std::env::var(k).ok()
    });
    let report = &checked.report;
    match format {
        CheckFormat::Json => println!("{}", report.to_json()),
        CheckFormat::Human => {
            let stderr = std::io::stderr();
            let color = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none();
            eprint!("{}", report.render(color, 100));
        }
    }
    if report.errors() > 0 {
        Outcome::Failed
    } else {
        Outcome::Ok
    }
}
