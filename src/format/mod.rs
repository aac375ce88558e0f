//! `hamstr fmt`: the canonical layout of a `.hmr` file, printed from its syntax tree,
//! with every comment kept beside what it stood beside. The rules are in
//! `docs/language.md`, "Formatting".

mod comments;
mod printer;

pub use comments::Comment;

use crate::syntax::{self, ast::File, SyntaxError};

/// Why a file was not formatted.
#[derive(Debug)]
pub enum FormatError {
    /// The text does not parse (`hamstr check` says where).
    Syntax(Vec<SyntaxError>),
    /// The canonical text would not mean the same as the input, or would lose a
    /// comment. A bug in the formatter, or a token it cannot move safely (an unclosed
    /// JSONPath bracket runs to the end of its line); the file is left as it is.
    Unsafe(String),
}

/// The canonical form of `text`.
pub fn format(text: &str) -> Result<String, FormatError> {
    let (tree, errors) = syntax::parse(text);
    let tree = match tree {
        Some(tree) if errors.is_empty() => tree,
        _ => return Err(FormatError::Syntax(errors)),
    };
    let comments = comments::collect(text, &tree);
    let out = printer::print(text, &comments, &tree);
    verify(&tree, &comments, &out)?;
    Ok(out)
}

/// The comments of `text`, in order, or `None` when it does not parse.
pub fn comments(text: &str) -> Option<Vec<Comment>> {
    syntax::parse(text)
        .0
        .map(|tree| comments::collect(text, &tree))
}

/// The output must parse to the same tree (spans aside) and hold the same comments.
fn verify(tree: &File, comments: &[Comment], out: &str) -> Result<(), FormatError> {
    let (again, errors) = syntax::parse(out);
    let Some(again) = again.filter(|_| errors.is_empty()) else {
        return Err(FormatError::Unsafe(
            "the formatted text would not parse".into(),
        ));
    };
    if again.without_spans() != tree.without_spans() {
        return Err(FormatError::Unsafe(
            "the formatted text would mean something else".into(),
        ));
    }
    let texts = |c: &[Comment]| c.iter().map(|c| c.text.clone()).collect::<Vec<_>>();
    if texts(&comments::collect(out, &again)) != texts(comments) {
        return Err(FormatError::Unsafe(
            "the formatted text would lose or reorder a comment".into(),
        ));
    }
    Ok(())
}
