//! Stopping: one cancellation tree for the whole run. A unit, a sink or a retired node
//! gets a child [`Stop`] of the run's; cancelling a parent stops every child. In-flight
//! work may go on for [`SHUTDOWN_GRACE`] after its stop (spec §8).

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long in-flight pages and sink writes get to finish once a stop is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A node of the cancellation tree, with the grace period its work gets after it fires.
#[derive(Clone, Debug)]
pub struct Stop {
    token: CancellationToken,
    grace: Duration,
}

impl Default for Stop {
    fn default() -> Self {
        Stop::new()
    }
}

impl Stop {
    /// A root: nothing stops it but [`Stop::stop`].
    pub fn new() -> Stop {
        Stop {
            token: CancellationToken::new(),
            grace: SHUTDOWN_GRACE,
        }
    }

    /// A root with another grace period (tests).
    pub fn with_grace(grace: Duration) -> Stop {
        Stop {
            token: CancellationToken::new(),
            grace,
        }
    }

    /// A child: stopped with this one, or on its own.
    pub fn child(&self) -> Stop {
        Stop {
            token: self.token.child_token(),
            grace: self.grace,
        }
    }

    /// How long in-flight work may go on after the stop.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    pub fn stop(&self) {
        self.token.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn stopped(&self) {
        self.token.cancelled().await
    }

    /// Resolves the grace period after the stop: in-flight work gives up then.
    pub async fn grace_over(&self) {
        self.token.cancelled().await;
        tokio::time::sleep(self.grace).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_child_stops_with_its_parent_and_not_the_other_way() {
        let root = Stop::new();
        let a = root.child();
        let b = root.child();
        a.stop();
        assert!(a.is_stopping() && !b.is_stopping() && !root.is_stopping());
        root.stop();
        assert!(b.is_stopping());
        let started = tokio::time::Instant::now();
        b.grace_over().await;
        assert_eq!(started.elapsed(), SHUTDOWN_GRACE);
    }
}
