//! The node kinds of a running graph, one file each: the HTTP client and paginators of
//! source nodes, record extraction, aggregates, and the sinks.

pub mod aggregate;
pub mod cursor_order;
pub mod eval;
pub mod extract;
pub mod net;
pub mod record;
pub mod sink;
pub mod source;
pub mod value;
