//! The bounded queue in front of every distributor.
//!
//! The session pushes, the distributor pops. When the queue is full the overflow policy
//! decides which event is dropped: the oldest (default: live consumers care about now) or
//! the newest (keeps a contiguous history). Either way the pusher never waits, and every
//! dropped event is handed back so the caller can count it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::event::Event;

/// What to drop when a bounded queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Evict the oldest queued event to make room for the new one.
    DropOldest,
    /// Refuse the new event and keep what is queued.
    DropNewest,
}

impl OverflowPolicy {
    /// Names accepted in configuration, default first.
    pub const NAMES: [&'static str; 2] = ["drop_oldest", "drop_newest"];

    /// Parses one of [`Self::NAMES`].
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "drop_oldest" => Some(Self::DropOldest),
            "drop_newest" => Some(Self::DropNewest),
            _ => None,
        }
    }
}

/// Result of [`EventQueue::push`].
#[derive(Debug)]
pub enum Pushed {
    /// Queued; `was_empty` tells the caller the consumer may need a wake-up.
    Queued { was_empty: bool },
    /// Queued after evicting this (oldest) event.
    Evicted(Arc<Event>),
    /// Not queued: the queue is full and the policy keeps what is there.
    Refused,
}

/// A bounded multi-producer queue of shared events.
#[derive(Debug)]
pub struct EventQueue {
    items: Mutex<VecDeque<Arc<Event>>>,
    /// Maximum number of queued events; changeable at runtime by a reconfigure.
    capacity: AtomicUsize,
    policy: Mutex<OverflowPolicy>,
}

impl EventQueue {
    /// An empty queue.
    pub fn new(capacity: usize, policy: OverflowPolicy) -> Self {
        Self {
            items: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity: AtomicUsize::new(capacity.max(1)),
            policy: Mutex::new(policy),
        }
    }

    /// Queues `event`, applying the overflow policy when full. Never blocks on the consumer.
    pub fn push(&self, event: Arc<Event>) -> Pushed {
        let capacity = self.capacity.load(Ordering::Relaxed);
        let mut items = self.items.lock();
        if items.len() < capacity {
            let was_empty = items.is_empty();
            items.push_back(event);
            return Pushed::Queued { was_empty };
        }
        match *self.policy.lock() {
            OverflowPolicy::DropNewest => Pushed::Refused,
            OverflowPolicy::DropOldest => {
                let evicted = items.pop_front();
                items.push_back(event);
                match evicted {
                    Some(old) => Pushed::Evicted(old),
                    None => Pushed::Queued { was_empty: true },
                }
            }
        }
    }

    /// Takes the oldest event.
    pub fn pop(&self) -> Option<Arc<Event>> {
        self.items.lock().pop_front()
    }

    /// Number of queued events.
    pub fn len(&self) -> usize {
        self.items.lock().len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.lock().is_empty()
    }

    /// Removes and returns everything queued (used when a distributor is disabled).
    pub fn take_all(&self) -> Vec<Arc<Event>> {
        self.items.lock().drain(..).collect()
    }

    /// Applies new limits; when shrinking, the oldest surplus events are returned as dropped.
    pub fn resize(&self, capacity: usize, policy: OverflowPolicy) -> Vec<Arc<Event>> {
        let capacity = capacity.max(1);
        self.capacity.store(capacity, Ordering::Relaxed);
        *self.policy.lock() = policy;
        let mut items = self.items.lock();
        let surplus = items.len().saturating_sub(capacity);
        items.drain(..surplus).collect()
    }

    /// Current capacity.
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn ev(seq: u64) -> Arc<Event> {
        Arc::new(Event::new(
            "s".into(),
            seq,
            "e".into(),
            Utc::now(),
            crate::json::empty_object(),
        ))
    }

    #[test]
    fn drop_oldest_keeps_the_latest_events() {
        let q = EventQueue::new(2, OverflowPolicy::DropOldest);
        assert!(matches!(q.push(ev(1)), Pushed::Queued { was_empty: true }));
        assert!(matches!(q.push(ev(2)), Pushed::Queued { was_empty: false }));
        match q.push(ev(3)) {
            Pushed::Evicted(old) => assert_eq!(old.seq, 1),
            other => panic!("expected eviction, got {other:?}"),
        }
        assert_eq!(q.pop().unwrap().seq, 2);
        assert_eq!(q.pop().unwrap().seq, 3);
        assert!(q.pop().is_none());
    }

    #[test]
    fn drop_newest_refuses_when_full() {
        let q = EventQueue::new(1, OverflowPolicy::DropNewest);
        q.push(ev(1));
        assert!(matches!(q.push(ev(2)), Pushed::Refused));
        assert_eq!(q.pop().unwrap().seq, 1);
    }

    #[test]
    fn shrinking_returns_the_oldest_surplus() {
        let q = EventQueue::new(4, OverflowPolicy::DropOldest);
        for s in 1..=4 {
            q.push(ev(s));
        }
        let dropped = q.resize(1, OverflowPolicy::DropOldest);
        assert_eq!(dropped.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(q.len(), 1);
    }
}
