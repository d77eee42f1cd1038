//! When each authenticated socket's token stops being accepted, and the one task that
//! closes their transports then (never a DISCONNECT: stock clients reconnect with a
//! fresh token). A task and a channel per socket cost ~1 KiB of every idle connection
//! (BENCHMARKS.md); a deadline here is an entry in one set.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use socketioxide::socket::Sid;
use tokio::{sync::Notify, time::Instant};

use crate::hub::Hub;

#[derive(Default)]
pub(crate) struct Expiries {
    due: Mutex<BTreeSet<(Instant, Sid)>>,
    /// Wakes the task when a deadline earlier than all others arrives.
    sooner: Arc<Notify>,
}

impl Expiries {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(Instant, Sid)>> {
        self.due.lock().expect("expiries lock")
    }

    /// Moves `sid`'s deadline from `old` to `new` (`None`: it has none).
    pub(crate) fn set(&self, sid: Sid, old: Option<Instant>, new: Option<Instant>) {
        let mut due = self.lock();
        if let Some(old) = old {
            due.remove(&(old, sid));
        }
        if let Some(new) = new {
            let soonest = due.first().is_none_or(|(first, _)| new < *first);
            due.insert((new, sid));
            if soonest {
                self.sooner.notify_one();
            }
        }
    }

    /// Takes the sockets due by `now`; the next deadline after them.
    fn take_due(&self, now: Instant) -> (Vec<Sid>, Option<Instant>) {
        let mut due = self.lock();
        let mut expired = Vec::new();
        while let Some(&(at, sid)) = due.first() {
            if at > now {
                return (expired, Some(at));
            }
            due.pop_first();
            expired.push(sid);
        }
        (expired, None)
    }

    /// Closes each socket's transport at its deadline, until the hub is gone.
    pub(crate) async fn run(hub: Weak<Hub>) {
        let Some(sooner) = hub.upgrade().map(|hub| hub.expiries.sooner.clone()) else {
            return;
        };
        loop {
            let next = {
                let Some(hub) = hub.upgrade() else { return };
                let (expired, next) = hub.expiries.take_due(Instant::now());
                for sid in expired {
                    if let Some(socket) = hub.io.get_socket(sid) {
                        tracing::debug!(%sid, "token expired; closing the transport");
                        socket.close_transport();
                    }
                }
                next
            };
            // Wakes at least every second to notice that the hub is gone.
            let wake = Instant::now() + Duration::from_secs(1);
            let at = next.map_or(wake, |next| next.min(wake));
            let _ = tokio::time::timeout_at(at, sooner.notified()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_move_and_come_due_in_order() {
        let expiries = Expiries::default();
        let now = Instant::now();
        let (a, b) = (Sid::new(), Sid::new());
        let later = now + Duration::from_secs(60);
        expiries.set(a, None, Some(now));
        expiries.set(b, None, Some(later));
        let (due, next) = expiries.take_due(now);
        assert_eq!((due, next), (vec![a], Some(later)));
        let refreshed = later + Duration::from_secs(60);
        expiries.set(b, Some(later), Some(refreshed));
        assert_eq!(expiries.take_due(later), (vec![], Some(refreshed)));
        expiries.set(b, Some(refreshed), None);
        assert_eq!(expiries.take_due(refreshed), (vec![], None), "gone");
    }
}
