//! Rolling upgrade arithmetic (Marathon's `upgradeStrategy`): how many old tasks to stop and
//! how many new ones to start, so that healthy tasks never drop below
//! ceil(n x minimumHealthCapacity) and live tasks never exceed floor(n x (1 + maximumOverCapacity)).

/// The bounds of one upgrade of `n` instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min_healthy: usize,
    pub max_live: usize,
}

/// Rounding slack, so that 4 x 0.5 is exactly 2.
const EPSILON: f64 = 1e-9;

impl Bounds {
    pub fn new(n: usize, minimum_health_capacity: f64, maximum_over_capacity: f64) -> Bounds {
        let min_healthy = ((n as f64 * minimum_health_capacity) - EPSILON)
            .ceil()
            .max(0.0) as usize;
        let max_live = ((n as f64 * (1.0 + maximum_over_capacity)) + EPSILON).floor() as usize;
        // Marathon's special case: with no room at all (1.0 / 0.0), one extra instance is
        // allowed, or the upgrade could never start.
        let max_live = if n > 0 && min_healthy >= max_live {
            min_healthy + 1
        } else {
            max_live.max(min_healthy)
        };
        Bounds {
            min_healthy,
            max_live,
        }
    }
}

/// Counts the step looks at. `live_*` include tasks being stopped (they still run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Old-version tasks not asked to stop.
    pub old: usize,
    pub old_healthy: usize,
    /// New-version tasks not asked to stop.
    pub new: usize,
    pub new_healthy: usize,
    /// Tasks asked to stop that still run.
    pub stopping: usize,
}

/// What to do now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Old tasks to stop: unhealthy ones first, then healthy ones the minimum can spare.
    pub stop_old: usize,
    pub start_new: usize,
}

/// One step towards `n` new tasks and no old ones, within `bounds`.
pub fn step(n: usize, bounds: Bounds, c: Counts) -> Step {
    let old_unhealthy = c.old - c.old_healthy;
    let healthy = c.old_healthy + c.new_healthy;
    // Old tasks go only as far as healthy ones can spare, and never below what is still needed.
    let stop_healthy = healthy
        .saturating_sub(bounds.min_healthy)
        .min(c.old_healthy);
    let stop_old = old_unhealthy + stop_healthy;
    let live = c.old + c.new + c.stopping;
    let room = bounds.max_live.saturating_sub(live);
    let start_new = n.saturating_sub(c.new).min(room);
    Step {
        stop_old,
        start_new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_follow_marathon() {
        assert_eq!(
            Bounds::new(4, 1.0, 1.0),
            Bounds {
                min_healthy: 4,
                max_live: 8
            }
        );
        assert_eq!(
            Bounds::new(4, 0.5, 0.5),
            Bounds {
                min_healthy: 2,
                max_live: 6
            }
        );
        assert_eq!(
            Bounds::new(3, 0.5, 0.0),
            Bounds {
                min_healthy: 2,
                max_live: 3
            }
        );
        assert_eq!(
            Bounds::new(4, 1.0, 0.0),
            Bounds {
                min_healthy: 4,
                max_live: 5
            },
            "one extra when nothing is spare"
        );
        assert_eq!(
            Bounds::new(4, 0.0, 0.0),
            Bounds {
                min_healthy: 0,
                max_live: 4
            }
        );
        assert_eq!(
            Bounds::new(1, 0.0, 0.0),
            Bounds {
                min_healthy: 0,
                max_live: 1
            }
        );
        assert_eq!(
            Bounds::new(0, 1.0, 0.0),
            Bounds {
                min_healthy: 0,
                max_live: 0
            }
        );
        assert_eq!(
            Bounds::new(3, 0.34, 0.0),
            Bounds {
                min_healthy: 2,
                max_live: 3
            }
        );
    }

    /// Runs an upgrade of n instances to the end, new tasks becoming healthy at once, and
    /// checks the bounds after every step.
    fn simulate(n: usize, min: f64, max: f64) -> usize {
        let bounds = Bounds::new(n, min, max);
        let mut c = Counts {
            old: n,
            old_healthy: n,
            ..Default::default()
        };
        for round in 1..=4 * n + 4 {
            if c.old == 0 && c.new == n {
                return round;
            }
            let s = step(n, bounds, c);
            // Stopping happens first, then starting; both are observed.
            let stop_unhealthy = s.stop_old.min(c.old - c.old_healthy);
            c.old -= s.stop_old;
            c.old_healthy -= s.stop_old - stop_unhealthy;
            c.stopping += s.stop_old;
            assert!(
                c.old_healthy + c.new_healthy >= bounds.min_healthy.min(n),
                "n={n} {min}/{max}: healthy dropped: {c:?}"
            );
            c.new += s.start_new;
            assert!(
                c.old + c.new + c.stopping <= bounds.max_live,
                "n={n} {min}/{max}: too many live: {c:?}"
            );
            // Stopped tasks end and new tasks pass their checks before the next step.
            c.stopping = 0;
            c.new_healthy = c.new;
        }
        panic!("n={n} {min}/{max}: no progress: {c:?}");
    }

    #[test]
    fn upgrades_finish_within_bounds_for_many_strategies() {
        for n in [0, 1, 2, 3, 4, 5, 10, 17] {
            for min in [0.0, 0.25, 0.5, 0.75, 1.0] {
                for max in [0.0, 0.25, 0.5, 1.0] {
                    simulate(n, min, max);
                }
            }
        }
    }

    #[test]
    fn unhealthy_new_tasks_never_let_old_ones_go_below_the_minimum() {
        let bounds = Bounds::new(4, 1.0, 0.5);
        let c = Counts {
            old: 4,
            old_healthy: 4,
            new: 2,
            new_healthy: 0,
            stopping: 0,
        };
        assert_eq!(
            step(4, bounds, c),
            Step {
                stop_old: 0,
                start_new: 0
            },
            "no healthy to spare, no room"
        );
        let c = Counts {
            old: 4,
            old_healthy: 4,
            new: 2,
            new_healthy: 1,
            stopping: 0,
        };
        assert_eq!(step(4, bounds, c).stop_old, 1);
    }

    #[test]
    fn unhealthy_old_tasks_go_first() {
        let bounds = Bounds::new(4, 1.0, 0.0);
        let c = Counts {
            old: 4,
            old_healthy: 3,
            new: 0,
            new_healthy: 0,
            stopping: 0,
        };
        assert_eq!(step(4, bounds, c).stop_old, 1);
    }
}
