//! One task per listener (one per worker) that tells idle connections to close, HTTP/1.1
//! connections that have not sent a request head within the header timeout to go, and every
//! connection to drain when the listener stops: no task or timer per connection (issue 14:
//! a watcher task with its own timer cost each idle connection about 0.5 KiB, and hyper's
//! header timer, set and dropped on every request, about 500 instructions a request).
//!
//! A connection is registered when it is accepted and sweeps drop it once it has ended. A
//! sweep runs every [`tick`] (a quarter of the shorter of the two timeouts, at most 1 s and
//! at least 100 ms), so a connection is told between its limit and one tick after it. Nothing
//! runs per request: a request only updates its connection's [`Activity`] atomics.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::conn::Activity;

/// Why a connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// No request in flight for the idle timeout.
    Idle,
    /// HTTP/1.1: no request head read in full within the header timeout.
    Header,
    /// The listener is draining.
    Drain,
}

/// How often connections are swept for a shortest timeout of `shortest`.
pub fn tick(shortest: Duration) -> Duration {
    (shortest / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Entries the list of watched connections keeps room for however few there are.
const KEPT_ROOM: usize = 64;

struct Watched {
    activity: Arc<Activity>,
    close: oneshot::Sender<Closing>,
    /// Set by the sweep that found it overdue.
    why: Option<Closing>,
}

#[derive(Default)]
struct Registry {
    watched: Vec<Watched>,
    /// The listener stopped: a connection registered from now on is told to drain at once.
    draining: bool,
}

/// The connections of one listener, as the sweeper sees them.
#[derive(Clone, Default)]
pub struct Sweeper {
    registry: Arc<Mutex<Registry>>,
}

impl Sweeper {
    /// Starts the sweep task for connections idle after `idle`, and HTTP/1.1 ones waiting
    /// for a request head for `header`; it ends when `shutdown` turns true, after telling
    /// every connection to drain.
    pub fn start(idle: Duration, header: Duration, mut shutdown: watch::Receiver<bool>) -> Sweeper {
        let sweeper = Sweeper::default();
        let task = sweeper.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tick(idle.min(header)));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => task.sweep(Instant::now(), idle, header),
                    () = super::stopped(&mut shutdown) => break,
                }
            }
            task.drain();
        });
        sweeper
    }

    /// Watches a new connection; the receiver resolves when it should close.
    pub fn register(&self, activity: Arc<Activity>) -> oneshot::Receiver<Closing> {
        let (close, rx) = oneshot::channel();
        let mut r = self.lock();
        if r.draining {
            let _ = close.send(Closing::Drain);
        } else {
            r.watched.push(Watched {
                activity,
                close,
                why: None,
            });
        }
        rx
    }

    /// Tells connections overdue at `now` to close and forgets those that ended. The list
    /// gives back room a burst of connections left behind, once it is a quarter full.
    fn sweep(&self, now: Instant, idle: Duration, header: Duration) {
        let due: Vec<Watched> = {
            let mut r = self.lock();
            let due = r
                .watched
                .extract_if(.., |w| {
                    w.why = w.activity.overdue(now, idle, header);
                    w.close.is_closed() || w.why.is_some()
                })
                .collect();
            let (len, room) = (r.watched.len(), r.watched.capacity());
            if room > KEPT_ROOM && len < room / 4 {
                r.watched.shrink_to((len * 2).max(KEPT_ROOM));
            }
            due
        };
        for w in due {
            // An ended connection's receiver is gone: nothing to tell.
            if let Some(why) = w.why {
                let _ = w.close.send(why);
            }
        }
    }

    fn drain(&self) {
        let mut r = self.lock();
        r.draining = true;
        for w in r.watched.drain(..) {
            let _ = w.close.send(Closing::Drain);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding it leaves a Vec that is still whole: keep using it.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn watched(&self) -> usize {
        self.lock().watched.len()
    }

    #[cfg(test)]
    fn room(&self) -> usize {
        self.lock().watched.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_come_every_quarter_of_the_idle_timeout_between_100_ms_and_1_s() {
        assert_eq!(tick(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(tick(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(tick(Duration::from_millis(100)), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_connections_leaves_no_room_behind_once_they_end() {
        let (_stop, shutdown) = watch::channel(false);
        let sweeper = Sweeper::start(Duration::from_secs(60), Duration::from_secs(60), shutdown);
        let kept = Activity::new();
        let _kept_rx = sweeper.register(kept.clone());
        let burst: Vec<_> = (0..5_000)
            .map(|_| sweeper.register(Activity::new()))
            .collect();
        assert!(sweeper.room() >= 5_001);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(sweeper.watched(), 5_001, "all still open");
        assert!(sweeper.room() >= 5_001);
        drop(burst);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(sweeper.watched(), 1, "the ended ones are forgotten");
        assert!(sweeper.room() <= KEPT_ROOM, "room: {}", sweeper.room());
    }

    #[tokio::test(start_paused = true)]
    async fn an_http1_connection_without_a_request_head_is_told_at_the_header_timeout() {
        let (_stop, shutdown) = watch::channel(false);
        let (idle, header) = (Duration::from_secs(60), Duration::from_secs(2));
        let sweeper = Sweeper::start(idle, header, shutdown);
        let (h1, h2) = (Activity::new(), Activity::new());
        h1.serving_http1();
        let mut h1_rx = sweeper.register(h1.clone());
        let mut h2_rx = sweeper.register(h2.clone());
        tokio::time::sleep(Duration::from_millis(1_900)).await;
        assert!(h1_rx.try_recv().is_err(), "within the header timeout");
        // Swept every 500 ms (a quarter of the shorter timeout).
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(h1_rx.try_recv().ok(), Some(Closing::Header));
        assert!(
            h2_rx.try_recv().is_err(),
            "HTTP/2 has no header timeout here"
        );
        tokio::time::sleep(Duration::from_secs(58)).await;
        assert_eq!(h2_rx.try_recv().ok(), Some(Closing::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_told_once_a_busy_one_never_and_all_drain_at_shutdown() {
        let (stop, shutdown) = watch::channel(false);
        let idle = Duration::from_secs(4);
        let sweeper = Sweeper::start(idle, Duration::from_secs(3600), shutdown);
        let (quiet, busy) = (Activity::new(), Activity::new());
        let mut quiet_rx = sweeper.register(quiet.clone());
        let mut busy_rx = sweeper.register(busy.clone());
        let _in_flight = busy.enter();
        let ended = sweeper.register(Activity::new());
        drop(ended);

        tokio::time::sleep(Duration::from_millis(3_900)).await;
        assert!(quiet_rx.try_recv().is_err(), "not idle long enough yet");
        assert_eq!(sweeper.watched(), 2, "the ended connection is forgotten");
        // Closed within one tick (1 s) after the idle timeout.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert_eq!(quiet_rx.try_recv().ok(), Some(Closing::Idle));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            busy_rx.try_recv().is_err(),
            "a request in flight is never idle"
        );

        stop.send_replace(true);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(busy_rx.try_recv().ok(), Some(Closing::Drain));
        let late = sweeper.register(Activity::new());
        assert_eq!(
            late.await.ok(),
            Some(Closing::Drain),
            "registered while draining"
        );
    }
}
