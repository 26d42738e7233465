//! Server-wide limits every session runs within.
//!
//! A session may ask for its own queue, history and client sizes, but an operator of one
//! lab must not be able to take the whole machine: each size has a ceiling set by the
//! server's configuration, checked when a session, distributor or template is validated
//! (every excess reported at once, naming the setting that caps it), and the events all
//! sessions hold share one [`MemoryBudget`]. The egress policy every distributor connects
//! through travels with them.

use std::sync::Arc;

use crate::budget::MemoryBudget;
use crate::egress::EgressPolicy;
use crate::glob::Glob;
use crate::recording::RecordingHub;
use crate::system::SystemFeed;

/// Largest `queueCapacity` the code accepts, whatever the configuration.
pub const HARD_MAX_QUEUE: u64 = 1_000_000;
/// Largest `historySize`.
pub const HARD_MAX_HISTORY: u64 = 1_000_000;
/// Largest `clientQueueCapacity`.
pub const HARD_MAX_CLIENT_QUEUE: u64 = 1_000_000;
/// Largest `maxClients`.
pub const HARD_MAX_CLIENTS: u64 = 100_000;
/// Largest `clientQueueBytes` (1 GiB).
pub const HARD_MAX_CLIENT_BYTES: u64 = 1 << 30;

/// The ceilings on per-session sizes, and the memory budget they share.
#[derive(Debug, Clone)]
pub struct Guardrails {
    /// Ceiling on a distributor's `queueCapacity` (`sessions.max_queue_capacity`).
    pub max_queue_capacity: u64,
    /// Ceiling on an SSE distributor's `historySize` (`sessions.max_history_size`).
    pub max_history_size: u64,
    /// Ceiling on `clientQueueCapacity` (`sessions.max_client_queue_capacity`).
    pub max_client_queue_capacity: u64,
    /// Ceiling on a live distributor's `maxClients` (`sessions.max_clients`).
    pub max_clients: u64,
    /// Ceiling on `clientQueueBytes` (`sessions.max_client_queue_bytes`).
    pub max_client_queue_bytes: u64,
    /// Bytes of queued events and SSE history the whole server may hold.
    pub budget: Arc<MemoryBudget>,
    /// Where distributors and sources may connect to.
    pub egress: Arc<EgressPolicy>,
    /// Environment variables `${NAME}` placeholders may read (`sessions.placeholder_vars`).
    pub placeholder_vars: Vec<Glob>,
    /// Where sessions and distributors report what happens to them (the system session).
    pub system: SystemFeed,
    /// Where sessions record to.
    pub recordings: RecordingHub,
}

impl Default for Guardrails {
    /// The code's own maxima and no memory limit: for tools and tests that build sessions
    /// without a server configuration.
    fn default() -> Self {
        Self {
            max_queue_capacity: HARD_MAX_QUEUE,
            max_history_size: HARD_MAX_HISTORY,
            max_client_queue_capacity: HARD_MAX_CLIENT_QUEUE,
            max_clients: HARD_MAX_CLIENTS,
            max_client_queue_bytes: HARD_MAX_CLIENT_BYTES,
            budget: Arc::new(MemoryBudget::unlimited()),
            egress: Arc::new(EgressPolicy::open()),
            placeholder_vars: Vec::new(),
            system: SystemFeed::default(),
            recordings: RecordingHub::default(),
        }
    }
}

/// One ceiling, as a field reader checks it.
#[derive(Debug, Clone, Copy)]
pub struct Ceiling {
    /// The largest value allowed here.
    pub max: u64,
    /// The server setting that sets it, named in the error.
    pub setting: &'static str,
}

impl Guardrails {
    /// The same limits with an egress policy that refuses nothing: for settings that are
    /// kept but do not connect (a template's, a distributor a session leaves off). They are
    /// checked when a session enables them.
    pub fn without_egress(&self) -> Guardrails {
        Guardrails {
            egress: Arc::new(EgressPolicy::open()),
            ..self.clone()
        }
    }

    /// The ceiling on `queueCapacity`.
    pub fn queue(&self) -> Ceiling {
        Ceiling {
            max: self.max_queue_capacity,
            setting: "sessions.max_queue_capacity",
        }
    }

    /// The ceiling on `historySize`.
    pub fn history(&self) -> Ceiling {
        Ceiling {
            max: self.max_history_size,
            setting: "sessions.max_history_size",
        }
    }

    /// The ceiling on `clientQueueCapacity`.
    pub fn client_queue(&self) -> Ceiling {
        Ceiling {
            max: self.max_client_queue_capacity,
            setting: "sessions.max_client_queue_capacity",
        }
    }

    /// The ceiling on `clientQueueBytes`.
    pub fn client_bytes(&self) -> Ceiling {
        Ceiling {
            max: self.max_client_queue_bytes,
            setting: "sessions.max_client_queue_bytes",
        }
    }

    /// The ceiling on `maxClients`.
    pub fn clients(&self) -> Ceiling {
        Ceiling {
            max: self.max_clients,
            setting: "sessions.max_clients",
        }
    }
}
