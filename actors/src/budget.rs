//! The server-wide memory budget for events held in memory: distributor queues and SSE
//! history.
//!
//! Every size a session asks for is capped by a ceiling ([`crate::guardrails`]), but many
//! sessions with large queues and histories of large events could still hold gigabytes.
//! So every entry held is charged, in bytes, to one [`MemoryBudget`]; when a charge takes
//! it over its limit, the oldest entries held anywhere in the server are evicted until it
//! is back under, whichever session holds them. An evicted queue entry is a `dropped`
//! event of its distributor; an evicted history entry is one a reconnecting SSE client
//! is told it missed. Both are counted per distributor, in the budget and in `/metrics`.
//!
//! An event queued for three distributors is charged three times (each queue holds a
//! reference and its share is not known), so the budget is an upper bound of what events
//! really take.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use metrics::{describe_counter, describe_gauge, gauge, Gauge, Unit};
use parking_lot::Mutex;
use serde::Serialize;

/// Bytes held against the budget, by state (`limit`, `used`).
pub const BUDGET_BYTES: &str = "synopticon_memory_budget_bytes";
/// Entries evicted to keep within the budget, by session, distributor and holder.
pub const BUDGET_EVICTIONS: &str = "synopticon_memory_budget_evictions_total";

/// Describes the budget's metrics once.
pub fn describe() {
    describe_gauge!(
        BUDGET_BYTES,
        Unit::Bytes,
        "Memory budget for queued events and SSE history: its limit and what is held."
    );
    describe_counter!(
        BUDGET_EVICTIONS,
        "Entries evicted, oldest first, to keep queued events and SSE history within the memory budget, by holder (queue: the event is dropped; history: no longer replayable)."
    );
}

/// A reclaim frees down to this share of the limit, so it does not run on every charge.
const RECLAIM_TARGET_PERCENT: usize = 95;
/// How long after an eviction the budget counts as under pressure (health `degraded`).
const PRESSURE_WINDOW: Duration = Duration::from_secs(60);

/// Something that holds entries charged to the budget, oldest first.
pub trait BudgetHolder: Send + Sync {
    /// When the oldest entry held arrived, if any.
    fn oldest(&self) -> Option<Instant>;
    /// Evicts entries, oldest first, at least one, then more while they arrived no later
    /// than `until` and fewer than `bytes` were freed; releases and counts them. Returns
    /// the bytes freed.
    fn evict(&self, until: Instant, bytes: usize) -> usize;
}

/// The byte budget shared by every queue and history of the server.
pub struct MemoryBudget {
    /// Bytes that may be held; `usize::MAX` for no limit.
    limit: usize,
    /// Bytes held now.
    used: AtomicUsize,
    /// Everything that holds charged entries (dead ones are pruned as found).
    holders: Mutex<Vec<Weak<dyn BudgetHolder>>>,
    /// One reclaim at a time; a charge during a reclaim does not start another.
    reclaiming: Mutex<()>,
    /// Entries and bytes evicted since start.
    evicted_entries: AtomicU64,
    evicted_bytes: AtomicU64,
    /// When the last eviction happened.
    last_eviction: Mutex<Option<Instant>>,
    m_used: Gauge,
}

/// The budget as the status endpoints show it.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetStatus {
    /// Bytes that may be held (`null`: no limit).
    pub limit_bytes: Option<usize>,
    /// Bytes held now.
    pub used_bytes: usize,
    /// Entries evicted since start.
    pub evicted_entries: u64,
    /// Bytes evicted since start.
    pub evicted_bytes: u64,
    /// Whether something was evicted in the last minute.
    pub under_pressure: bool,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.limit)
            .field("used", &self.used.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes, shown in `/metrics`.
    pub fn new(limit: usize) -> Self {
        gauge!(BUDGET_BYTES, "state" => "limit").set(limit as f64);
        let m_used = gauge!(BUDGET_BYTES, "state" => "used");
        m_used.set(0.0);
        Self::with(limit, m_used)
    }

    /// No limit (tests and tools that build sessions by hand), not in `/metrics`.
    pub fn unlimited() -> Self {
        Self::with(usize::MAX, Gauge::noop())
    }

    fn with(limit: usize, m_used: Gauge) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            holders: Mutex::new(Vec::new()),
            reclaiming: Mutex::new(()),
            evicted_entries: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
            last_eviction: Mutex::new(None),
            m_used,
        }
    }

    /// Adds a holder the budget may evict from.
    pub fn register(&self, holder: Weak<dyn BudgetHolder>) {
        let mut holders = self.holders.lock();
        holders.retain(|h| h.strong_count() > 0);
        holders.push(holder);
    }

    /// Charges `bytes` about to be stored. Call it before the entry becomes visible (a
    /// consumer taking it at once then gives back what was charged), then
    /// [`settle`](Self::settle) once no holder's lock is held.
    pub fn reserve(&self, bytes: usize) {
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.m_used.set(used as f64);
    }

    /// Over the limit, evicts the oldest entries held anywhere until the budget is back
    /// under its target. Takes holders' locks: call it with none held.
    pub fn settle(&self) {
        if self.used.load(Ordering::Relaxed) > self.limit {
            self.reclaim();
        }
    }

    /// Gives back `bytes` no longer held.
    pub fn release(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Ordering::Relaxed);
        self.m_used.set(before.saturating_sub(bytes) as f64);
    }

    /// Holders report what they evicted.
    pub fn record_eviction(&self, entries: u64, bytes: u64) {
        self.evicted_entries.fetch_add(entries, Ordering::Relaxed);
        self.evicted_bytes.fetch_add(bytes, Ordering::Relaxed);
        *self.last_eviction.lock() = Some(Instant::now());
    }

    /// Current figures.
    pub fn status(&self) -> BudgetStatus {
        BudgetStatus {
            limit_bytes: (self.limit != usize::MAX).then_some(self.limit),
            used_bytes: self.used.load(Ordering::Relaxed),
            evicted_entries: self.evicted_entries.load(Ordering::Relaxed),
            evicted_bytes: self.evicted_bytes.load(Ordering::Relaxed),
            under_pressure: self
                .last_eviction
                .lock()
                .is_some_and(|at| at.elapsed() < PRESSURE_WINDOW),
        }
    }

    /// Evicts the oldest entries held anywhere until the budget is back under its target:
    /// the holders sit in a heap by their oldest entry, and the oldest holder gives up
    /// entries until its next one is newer than the next holder's oldest.
    fn reclaim(&self) {
        let Some(_one_at_a_time) = self.reclaiming.try_lock() else {
            return;
        };
        let target = self.limit / 100 * RECLAIM_TARGET_PERCENT;
        let holders: Vec<Arc<dyn BudgetHolder>> = {
            let mut list = self.holders.lock();
            list.retain(|h| h.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        let mut oldest_first: BinaryHeap<Reverse<(Instant, usize)>> = holders
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.oldest().map(|at| Reverse((at, i))))
            .collect();
        loop {
            let used = self.used.load(Ordering::Relaxed);
            if used <= target {
                return;
            }
            // Nothing left to evict means what is charged is in flight, not held.
            let Some(Reverse((_, i))) = oldest_first.pop() else {
                return;
            };
            let until = oldest_first.peek().map_or_else(
                || Instant::now() + Duration::from_secs(3600),
                |Reverse((at, _))| *at,
            );
            holders[i].evict(until, used - target);
            if let Some(at) = holders[i].oldest() {
                oldest_first.push(Reverse((at, i)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A holder of (arrival, bytes) entries.
    struct Fifo {
        budget: Arc<MemoryBudget>,
        items: Mutex<VecDeque<(Instant, usize)>>,
        evicted: AtomicUsize,
    }

    impl Fifo {
        fn new(budget: &Arc<MemoryBudget>) -> Arc<Self> {
            let fifo = Arc::new(Self {
                budget: budget.clone(),
                items: Mutex::new(VecDeque::new()),
                evicted: AtomicUsize::new(0),
            });
            let weak: Weak<dyn BudgetHolder> = Arc::downgrade(&fifo) as Weak<dyn BudgetHolder>;
            budget.register(weak);
            fifo
        }

        fn push(&self, at: Instant, bytes: usize) {
            self.budget.reserve(bytes);
            self.items.lock().push_back((at, bytes));
            self.budget.settle();
        }
    }

    impl BudgetHolder for Fifo {
        fn oldest(&self) -> Option<Instant> {
            self.items.lock().front().map(|(at, _)| *at)
        }

        fn evict(&self, until: Instant, bytes: usize) -> usize {
            let mut items = self.items.lock();
            let mut freed = 0;
            while let Some((at, size)) = items.front().copied() {
                if freed > 0 && (at > until || freed >= bytes) {
                    break;
                }
                items.pop_front();
                freed += size;
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
            drop(items);
            self.budget.release(freed);
            freed
        }
    }

    #[test]
    fn the_oldest_entries_anywhere_go_first_and_the_budget_holds() {
        let budget = Arc::new(MemoryBudget::new(1000));
        let (a, b) = (Fifo::new(&budget), Fifo::new(&budget));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // a holds the older entries, b the newer ones, interleaved in time.
        a.push(at(0), 300);
        b.push(at(1), 300);
        a.push(at(2), 300);
        b.push(at(3), 300); // 1200 > 1000: a's first, the oldest, goes (down to 950)
        assert_eq!(budget.status().used_bytes, 900);
        assert_eq!(a.evicted.load(Ordering::Relaxed), 1);
        assert_eq!(b.evicted.load(Ordering::Relaxed), 0);
        a.push(at(4), 300); // b's at(1) is now the oldest anywhere: it goes
        b.push(at(5), 300); // then a's at(2)
        assert_eq!(budget.status().used_bytes, 900);
        assert_eq!(a.oldest(), Some(at(4)));
        assert_eq!(b.oldest(), Some(at(3)));
        assert_eq!(
            budget.status().evicted_entries,
            0,
            "holders record their own"
        );
    }

    #[test]
    fn a_dropped_holder_is_forgotten_and_unlimited_never_evicts() {
        let budget = Arc::new(MemoryBudget::new(100));
        drop(Fifo::new(&budget));
        let kept = Fifo::new(&budget);
        kept.push(Instant::now(), 60);
        kept.push(Instant::now(), 60);
        assert_eq!(kept.items.lock().len(), 1);
        assert_eq!(budget.holders.lock().len(), 1);
        let free = Arc::new(MemoryBudget::unlimited());
        let f = Fifo::new(&free);
        for _ in 0..100 {
            f.push(Instant::now(), 1 << 20);
        }
        assert_eq!(f.evicted.load(Ordering::Relaxed), 0);
    }
}
