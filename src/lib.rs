//! hamstr: gather data from many HTTP APIs into one store.
//!
//! A `.hmr` file flows one way through these stages:
//! text → [`syntax`] (spanned AST) → [`check`] (diagnostics and a checked pipeline).

pub mod syntax;
pub mod demo;
