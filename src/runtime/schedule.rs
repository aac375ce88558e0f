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

/// Where in an interval of `ms` a unit starts: the same offset every time for the same
/// name (a hash of it), different ones spread evenly over many names.
pub fn spread(name: &str, ms: u64) -> std::time::Duration {
    let offset = xxhash_rust::xxh3::xxh3_64(name.as_bytes()) % ms.max(1);
    std::time::Duration::from_millis(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1,000 tenants on `every(1m)`: no second holds more than a few of them.
    #[test]
    fn a_thousand_units_spread_over_the_minute() {
        let mut per_second = [0u32; 60];
        for i in 0..1000 {
            let d = spread(&format!("orders[shop{i}]"), 60_000);
            assert!(d < std::time::Duration::from_secs(60));
            per_second[d.as_secs() as usize] += 1;
        }
        assert!(per_second.iter().all(|&n| n < 40), "{per_second:?}");
        assert_eq!(spread("a[b]", 60_000), spread("a[b]", 60_000));
    }
}
