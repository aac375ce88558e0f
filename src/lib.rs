//! hamstr: gather data from many HTTP APIs into one store.
//!
//! A `.hmr` file flows one way through the stages below, each knowing only those above
//! it; [`app`] holds the commands over all of them, and nothing in the library imports it.

pub mod check; // names, types, JSONPaths: every diagnostic, and a checked pipeline
pub mod nodes; // one kind of node each: pollers, paginators, extraction, aggregates, sinks
pub mod plan; // the dataflow graph as plain data, and the diff of two
pub mod runtime; // tasks wired by bounded channels; a reload applies a plan diff
pub mod state;
pub mod syntax; // text → an AST where every name and literal carries its span // the store behind the nodes: watermarks, keys, queues, views

pub mod format; // a syntax tree printed back as canonical text (`hamstr fmt`)
pub mod watch; // file saves → a debounced reload message

pub mod app;
