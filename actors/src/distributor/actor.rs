//! The generic distributor actor: queue draining, breaker, panic isolation, supervision.
//!
//! The actor runs under an actix [`Supervisor`]. A panic in protocol code is caught at the
//! actor boundary, the event in hand is counted as failed, and the actor stops; the
//! supervisor then calls [`Supervised::restarting`], which counts the restart and sets a
//! backoff before the actor takes events again. The queue, the counters and the protocol
//! state (live clients included) survive the restart.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;

use super::breaker::{BreakerState, CircuitBreaker, Permit};
use super::live::ClientQueue;
use super::queue::EventQueue;
use super::{CloseReason, CommonConfig, Delivery, LiveAttach, Outcome, ParsedConfig, Protocol};
use crate::guardrails::Guardrails;
use crate::telemetry::{
    BreakerTransitioned, DistributorRestarted, DistributorStalled, DistributorTelemetry,
};

/// Deliveries done in one go before yielding the thread to other actors.
const DRAIN_BATCH: usize = 512;
/// How often protocol housekeeping and the queue-depth gauge run.
const TICK_INTERVAL: Duration = Duration::from_millis(250);
/// First restart backoff; doubles per consecutive restart.
const RESTART_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest restart backoff.
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Healthy running time after which the restart backoff starts from the base again.
const RESTART_BACKOFF_RESET: Duration = Duration::from_secs(60);

/// Session → distributor: the queue went from empty to non-empty.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Session → distributor: apply a new, validated config.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure<C: 'static>(pub ParsedConfig<C>);

/// Server (via session) → distributor: attach a live client.
#[derive(Message)]
#[rtype(result = "Result<Arc<ClientQueue>, String>")]
pub struct Attach(pub LiveAttach);

/// Debug hook → distributor: panic inside the supervised boundary.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// Session → distributor: stop for good.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown(pub CloseReason);

/// One distributor of one session.
pub struct DistributorActor<P: Protocol> {
    /// Protocol state and behaviour.
    protocol: P,
    /// Events routed here by the session, bounded.
    queue: Arc<EventQueue>,
    /// Counters shared with the session.
    telemetry: Arc<DistributorTelemetry>,
    /// Shared settings (queue, breaker, in-flight).
    common: CommonConfig,
    /// Pauses delivery while the peer keeps failing.
    breaker: CircuitBreaker,
    /// Deliveries started and not yet finished.
    in_flight: usize,
    /// A delayed drain (breaker wait or restart backoff) is already scheduled.
    wake_scheduled: bool,
    /// Set by a caught panic: the next stop is a restart, not the end.
    restart_pending: bool,
    /// Set by `Shutdown`: the next stop is the end.
    shutting_down: bool,
    /// Restarts in a row without a healthy period in between.
    consecutive_restarts: u32,
    /// When the actor last (re)started.
    started_at: Instant,
    /// Backoff to wait before draining after a restart.
    restart_delay: Option<Duration>,
    /// Since when events have been waiting (queued or in flight) without a delivery
    /// completing; `None` while there is nothing to do. The stall watchdog reads it.
    waiting_since: Option<Instant>,
}

impl<P: Protocol> DistributorActor<P> {
    /// Starts the actor under a supervisor on the current arbiter.
    pub fn start_supervised(
        session: Arc<str>,
        config: ParsedConfig<P::Config>,
        queue: Arc<EventQueue>,
        telemetry: Arc<DistributorTelemetry>,
        rails: &Guardrails,
    ) -> Addr<Self> {
        let protocol = P::new(session, config.protocol, telemetry.clone(), rails);
        let actor = Self {
            protocol,
            queue,
            telemetry,
            common: config.common,
            breaker: CircuitBreaker::new(config.common.breaker),
            in_flight: 0,
            wake_scheduled: false,
            restart_pending: false,
            shutting_down: false,
            consecutive_restarts: 0,
            started_at: Instant::now(),
            restart_delay: None,
            waiting_since: None,
        };
        Supervisor::start(move |_| actor)
    }

    /// The stall watchdog, run on every tick: events waiting and no delivery completed for
    /// `stallTimeoutMs` opens the breaker, so a peer that takes everything and answers
    /// nothing is as visible (status, health, metrics) as one that refuses.
    fn watch(&mut self, now: Instant) {
        let pending = self.in_flight > 0 || !self.queue.is_empty();
        if !pending {
            self.waiting_since = None;
            return;
        }
        let since = *self.waiting_since.get_or_insert(now);
        let idle = now.saturating_duration_since(since);
        if idle < self.common.stall_timeout || self.breaker.state() != BreakerState::Closed {
            return;
        }
        DistributorStalled {
            telemetry: &self.telemetry,
            idle,
            waiting: self.queue.len() + self.in_flight,
        }
        .emit();
        let t = self.breaker.trip(now);
        self.report_transition(t);
        // The next verdict needs another full period without progress.
        self.waiting_since = Some(now);
    }

    /// Takes events off the queue while the breaker and the in-flight limit allow.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down || self.restart_pending || self.wake_scheduled {
            return;
        }
        // Events taken in this go (a batch counts all its events).
        let mut taken = 0;
        while taken < DRAIN_BATCH {
            if self.in_flight >= self.common.max_in_flight || self.queue.is_empty() {
                return;
            }
            let (permit, transition) = self.breaker.permit(Instant::now());
            self.report_transition(transition);
            match permit {
                Permit::Allow => {}
                Permit::Probe => {}
                Permit::Wait(delay) => {
                    self.wake_after(delay, ctx);
                    return;
                }
            }
            // Protocols that send several events in one call get a batch (not while the
            // breaker probes with one).
            if P::BATCH > 1 && permit == Permit::Allow && self.queue.len() > 1 {
                let mut batch = Vec::with_capacity(P::BATCH.min(self.queue.len()));
                while batch.len() < P::BATCH {
                    match self.queue.pop() {
                        Some(e) => batch.push(e),
                        None => break,
                    }
                }
                taken += batch.len();
                match catch_unwind(AssertUnwindSafe(|| self.protocol.deliver_many(&batch))) {
                    Ok(outcomes) => {
                        for (outcome, event) in outcomes.into_iter().zip(&batch) {
                            self.account(outcome, &event.accepted_at);
                        }
                    }
                    Err(panic) => {
                        self.on_panic(panic, batch.len(), ctx);
                        return;
                    }
                }
                continue;
            }
            let Some(event) = self.queue.pop() else {
                return;
            };
            taken += 1;
            let attempt = catch_unwind(AssertUnwindSafe(|| self.protocol.deliver(&event)));
            match attempt {
                Ok(Delivery::Done(outcome)) => self.account(outcome, &event.accepted_at),
                Ok(Delivery::Later(future)) => {
                    self.in_flight += 1;
                    let accepted_at = event.accepted_at;
                    let guarded = AssertUnwindSafe(future).catch_unwind();
                    ctx.spawn(guarded.into_actor(self).map(move |result, act, ctx| {
                        act.in_flight -= 1;
                        match result {
                            Ok(outcome) => {
                                act.account(outcome, &accepted_at);
                                act.drain(ctx);
                            }
                            Err(panic) => act.on_panic(panic, 1, ctx),
                        }
                    }));
                }
                Err(panic) => {
                    self.on_panic(panic, 1, ctx);
                    return;
                }
            }
        }
        // A long queue: let other actors on this thread run, then continue.
        ctx.notify(Drain);
    }

    fn account(&mut self, outcome: Outcome, accepted_at: &Instant) {
        match outcome {
            Outcome::Delivered => {
                self.waiting_since = Some(Instant::now());
                self.telemetry.delivered();
                if !P::LATENCY_MEASURED_DOWNSTREAM {
                    self.telemetry
                        .record_latency(accepted_at.elapsed().as_secs_f64());
                }
                let t = self.breaker.on_success();
                self.report_transition(t);
            }
            Outcome::Failed(error) => {
                // An answer, even a refusal, is progress: the peer is not frozen.
                self.waiting_since = Some(Instant::now());
                self.telemetry.failed(&error);
                let t = self.breaker.on_failure(Instant::now());
                self.report_transition(t);
            }
            // Silence is not progress: the stall watchdog keeps counting.
            Outcome::Unconfirmed(error) => {
                self.telemetry.unconfirmed(&error);
                let t = self.breaker.on_failure(Instant::now());
                self.report_transition(t);
            }
            Outcome::Rejected(error) => {
                self.waiting_since = Some(Instant::now());
                self.telemetry.failed(&error);
            }
        }
    }

    fn report_transition(&self, transition: Option<super::breaker::Transition>) {
        if let Some(t) = transition {
            BreakerTransitioned {
                telemetry: &self.telemetry,
                from: t.from,
                to: t.to,
            }
            .emit();
        }
    }

    fn wake_after(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        if self.wake_scheduled {
            return;
        }
        self.wake_scheduled = true;
        ctx.run_later(delay, |act, ctx| {
            act.wake_scheduled = false;
            act.drain(ctx);
        });
    }

    /// A panic escaped protocol code: count the events in hand (one, a batch's, or none)
    /// as failed and stop, so the supervisor restarts the actor.
    fn on_panic(&mut self, panic: Box<dyn Any + Send>, in_hand: usize, ctx: &mut Context<Self>) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let cause = format!("panicked: {message}");
        self.telemetry.set_last_error(&cause);
        // Deliveries still running die with the context: they are failures too.
        for _ in 0..in_hand + self.in_flight {
            self.telemetry.failed(&cause);
        }
        self.in_flight = 0;
        self.restart_pending = true;
        ctx.stop();
    }
}

impl<P: Protocol> Actor for DistributorActor<P> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.shutting_down {
            // Restarted while its last address was being dropped: stay idle until it goes.
            return;
        }
        self.started_at = Instant::now();
        self.restart_pending = false;
        self.protocol.started();
        ctx.run_interval(TICK_INTERVAL, |act, _| {
            act.protocol.tick();
            act.telemetry.set_queue_depth(act.queue.len());
            act.watch(Instant::now());
        });
        match self.restart_delay.take() {
            Some(delay) => self.wake_after(delay, ctx),
            None => self.drain(ctx),
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // A caught panic stops the actor only to have it restarted: keep the clients.
        if !self.restart_pending {
            self.protocol.close(CloseReason::DistributorDisabled);
            let left = self.queue.take_all().len() as u64;
            self.telemetry.dropped(left, "distributor stopped");
            // Deliveries still running die with the context; their outcome is unknown, so
            // they count as dropped rather than vanish from the books.
            self.telemetry.dropped(
                self.in_flight as u64,
                "in flight when the distributor stopped",
            );
            self.in_flight = 0;
            self.telemetry.set_queue_depth(0);
        }
    }
}

impl<P: Protocol> Supervised for DistributorActor<P> {
    fn restarting(&mut self, _: &mut Self::Context) {
        if self.shutting_down {
            return;
        }
        if self.started_at.elapsed() > RESTART_BACKOFF_RESET {
            self.consecutive_restarts = 0;
        }
        let factor = 2u32.saturating_pow(self.consecutive_restarts.min(16));
        let delay = RESTART_BACKOFF_BASE
            .saturating_mul(factor)
            .min(RESTART_BACKOFF_MAX);
        self.consecutive_restarts += 1;
        self.wake_scheduled = false;
        self.restart_delay = Some(delay);
        let cause = self
            .telemetry
            .last_error()
            .map(|e| e.message)
            .unwrap_or_else(|| "stopped".into());
        DistributorRestarted {
            telemetry: &self.telemetry,
            cause: &cause,
            backoff_ms: delay.as_millis() as u64,
        }
        .emit();
    }
}

impl<P: Protocol> Handler<Drain> for DistributorActor<P> {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) {
        self.drain(ctx);
    }
}

impl<P: Protocol> Handler<Reconfigure<P::Config>> for DistributorActor<P> {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure<P::Config>, ctx: &mut Self::Context) {
        let ParsedConfig { common, protocol } = msg.0;
        let surplus = self.queue.resize(common.queue_capacity, common.overflow);
        self.telemetry
            .dropped(surplus.len() as u64, "queue shrunk by reconfigure");
        self.breaker.set_settings(common.breaker);
        self.common = common;
        let result = catch_unwind(AssertUnwindSafe(|| self.protocol.reconfigure(protocol)));
        match result {
            Ok(()) => self.drain(ctx),
            Err(panic) => self.on_panic(panic, 0, ctx),
        }
    }
}

impl<P: Protocol> Handler<Attach> for DistributorActor<P> {
    type Result = Result<Arc<ClientQueue>, String>;

    fn handle(&mut self, msg: Attach, _: &mut Self::Context) -> Self::Result {
        self.protocol.attach(msg.0)
    }
}

impl<P: Protocol> Handler<InjectPanic> for DistributorActor<P> {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Self::Context) {
        let result: Result<(), _> = catch_unwind(|| panic!("fault injected by the debug hook"));
        if let Err(panic) = result {
            self.on_panic(panic, 0, ctx);
        }
    }
}

impl<P: Protocol> Handler<Shutdown> for DistributorActor<P> {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) {
        self.shutting_down = true;
        self.protocol.close(msg.0);
        let left = self.queue.take_all().len() as u64;
        self.telemetry.dropped(left, "distributor shut down");
        ctx.stop();
    }
}
