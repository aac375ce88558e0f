//! Text to syntax tree: the pest grammar in `grammar/hamstr.pest`, turned into the spanned
//! AST of [`ast`]. No pest type leaves this folder.

pub mod ast;
mod parser;

pub use ast::*;
pub use parser::{parse, SyntaxError};
