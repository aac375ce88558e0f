//! hamstr: gather data from many HTTP APIs into one store.
//!
//! A `.hmr` file flows one way through these stages:
//! text → [`syntax`] (spanned AST) → [`check`] (diagnostics and a checked pipeline).
//! [`format`] prints a syntax tree back as canonical text (`hamstr fmt`).

pub mod check;
pub mod commands;
pub mod control;
pub mod demo;
pub mod demo_run;
pub mod format;
pub mod masking;
pub mod nodes;
pub mod plan;
pub mod runtime;
pub mod state;
pub mod stop;
pub mod syntax;
pub mod watch;

/// Reads a pipeline file as UTF-8 text, with an error a person can act on.
pub fn read_pipeline(path: &std::path::Path) -> Result<String, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "`{}` is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}
