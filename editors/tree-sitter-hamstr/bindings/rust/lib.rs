//! The tree-sitter grammar of hamstr's `.hmr` pipeline files, and its highlight query.
//!
//! ```ignore
//! let mut parser = tree_sitter::Parser::new();
//! parser.set_language(&tree_sitter_hamstr::LANGUAGE.into())?;
//! let tree = parser.parse("sink out = stdout()", None).unwrap();
//! ```

use tree_sitter_language::LanguageFn;

extern "C" {
    fn tree_sitter_hamstr() -> *const ();
}

/// The language, for `tree_sitter::Parser::set_language`.
pub const LANGUAGE: LanguageFn = unsafe { LanguageFn::from_raw(tree_sitter_hamstr) };

/// The highlight query (`queries/highlights.scm`).
pub const HIGHLIGHTS_QUERY: &str = include_str!("../../queries/highlights.scm");

/// The node types of the grammar (`src/node-types.json`).
pub const NODE_TYPES: &str = include_str!("../../src/node-types.json");
