//! `hamstr fmt`: a pipeline file rewritten in canonical layout, comments kept, replacing
//! the file in one rename; with `--check`, a diff instead.

use super::{load, print_stdout, Console, Error, Outcome};
use std::path::Path;

/// Formats a pipeline file in place (unless `check_only`: then a file that would change
/// is a unified diff on stdout and [`Outcome::Failure`]). A file with syntax errors is not
/// touched; its diagnostics are rendered as `hamstr check` renders them.
pub fn fmt(path: &Path, check_only: bool, console: Console) -> Result<Outcome, Error> {
    let text = load::read_pipeline(path)?;
    let formatted = match crate::format::format(&text) {
        Ok(f) => f,
        Err(crate::format::FormatError::Syntax(_)) => {
            let checked = load::check_file(path, &text, crate::check::Mode::Single);
            return Err(Error::Pipeline(checked.report.render(console.color, 100)));
        }
        Err(crate::format::FormatError::Unsafe(why)) => {
            return Err(Error::Unformattable {
                path: path.display().to_string(),
                why,
            })
        }
    };
    if formatted == text {
        return Ok(Outcome::Success);
    }
    if check_only {
        let name = path.display().to_string();
        let diff = similar::TextDiff::from_lines(&text, &formatted)
            .unified_diff()
            .context_radius(3)
            .header(&name, &format!("{name} (formatted)"))
            .to_string();
        eprintln!("`{name}` is not formatted");
        print_stdout(&diff)?;
        return Ok(Outcome::Failure);
    }
    write_replacing(path, &formatted)?;
    Ok(Outcome::Success)
}

/// Writes a temporary file beside the target and renames it over the target, so a
/// crash leaves either the old text or the new, never half of one. A symbolic link is
/// followed: the file it points to is replaced, the link stays.
fn write_replacing(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into());
    let tmp = target.with_file_name(format!(".{file_name}.fmt-{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        if let Ok(meta) = std::fs::metadata(&target) {
            f.set_permissions(meta.permissions())?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io(format!("cannot write `{}`: {e}", path.display()))
    })
}
