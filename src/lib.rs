//! hamstr: gather data from many HTTP APIs into one store.
//!
//! A `.hmr` file flows one way, each stage knowing only those before it:
//! text → [`syntax`] (a spanned AST) → [`check`] (diagnostics, a checked pipeline) →
//! [`plan`] (the dataflow graph as data, and the diff of two) → [`runtime`] (tasks wired
//! by bounded channels) running the [`nodes`] over the [`state`] store.
//! [`watch`] turns file saves into reloads; [`format`] prints canonical text.
//! [`app`] holds the commands over all of these; nothing in the library imports it.
//! [`stop`] (one cancellation tree), [`masking`] (secrets as `***`), [`logs`] (text or
//! JSON lines), [`pg_tls`] (connections to PostgreSQL, TLS included) and [`metrics`] (the
//! Prometheus registry) serve every stage.
//! docs/architecture.md tells the runtime's units, tasks, cancellation and commit.

// In the order above; the blank lines keep rustfmt from sorting them.
pub mod syntax;

pub mod check;

pub mod plan;

pub mod runtime;

pub mod nodes;

pub mod state;

pub mod cluster;

pub mod watch;

pub mod format;

// Leaves every stage may use: secrets masked in what is printed, how messages are
// written (text or JSON lines), and stopping.
pub mod masking;

pub mod logs;

pub mod pg_tls;

pub mod metrics;

pub mod stop;

pub mod app;
