//! The node kinds of a running graph, one file each: the HTTP client and paginators of
//! source nodes, record extraction, aggregates, and the sinks.

pub mod aggregate;
pub mod eval;
pub mod extract;
pub mod http;
pub mod paginate;
pub mod poller;
pub mod postgres;
pub mod record;
pub mod sinks;
pub mod value;
pub mod webhook;
