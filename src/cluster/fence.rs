//! The leases this instance holds, by unit, with the instant each runs out: what the
//! store checks before a page goes to the sinks, and which epoch its transactions check.

use crate::state::{Result, StateError};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Instant;

/// The leases this instance holds, as the lease loop last renewed them: what the store
/// fences with.
#[derive(Default)]
pub struct Fence {
    pub instance: i64,
    /// Units held: their epoch and the instant the lease runs out (by this process's
    /// monotonic clock, which keeps counting while the process is stopped).
    held: RwLock<HashMap<String, (i64, Instant)>>,
    /// The unit of each source.
    unit_of: RwLock<HashMap<String, String>>,
}

impl Fence {
    pub fn new(instance: i64) -> Fence {
        Fence {
            instance,
            ..Fence::default()
        }
    }

    pub fn set_units(&self, unit_of: HashMap<String, String>) {
        *self.unit_of.write().unwrap_or_else(|p| p.into_inner()) = unit_of;
    }

    pub fn hold(&self, unit: &str, epoch: i64, until: Instant) {
        self.held
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(unit.to_string(), (epoch, until));
    }

    pub fn drop_unit(&self, unit: &str) {
        self.held
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(unit);
    }

    pub fn clear(&self) {
        self.held.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The unit of `source` and the epoch it is held at, while its lease runs.
    pub fn check(&self, source: &str) -> Result<(String, i64)> {
        let unit = self
            .unit_of
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(source)
            .cloned()
            .unwrap_or_else(|| source.to_string());
        let held = self
            .held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&unit)
            .copied();
        match held {
            Some((epoch, until)) if until > Instant::now() => Ok((unit, epoch)),
            _ => {
                tracing::warn!(unit = %unit, source = %source, "fenced: the lease is no longer this instance's; what it fetched is dropped");
                Err(StateError::Fenced { name: unit })
            }
        }
    }
}
