//! When a scheduled source runs next: `every(D)` counts from the previous start,
//! `cron(...)` follows croner in local time (or `TZ`), `once` never again.

use crate::check::Schedule;
use tokio::time::Instant;

pub fn next_after(schedule: &Schedule, last_start: Instant) -> Option<Instant> {
    match schedule {
        Schedule::Every { ms } => Some(last_start + std::time::Duration::from_millis(*ms)),
        Schedule::Cron(expr) => {
            let cron: croner::Cron = expr.parse().ok()?;
            let now = chrono::Local::now();
            let next = cron.find_next_occurrence(&now, false).ok()?;
            let wait = (next - now).to_std().unwrap_or_default();
            Some(Instant::now() + wait)
        }
        Schedule::Once | Schedule::Parent | Schedule::Push => None,
    }
}
