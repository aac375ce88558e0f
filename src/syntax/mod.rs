//! Text to syntax tree: the pest grammar in `grammar/hamstr.pest`, turned into the spanned
//! AST of [`ast`]. No pest type leaves this folder.

pub mod ast;
mod errors;
mod expr;
mod parser;

pub use ast::*;
pub use errors::SyntaxError;
pub use parser::parse;
