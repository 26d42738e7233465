//! The `InferenceActor`: one per model, in front of a dedicated inference thread.
//!
//! The actor lives on an actix arbiter and never runs a model itself: it puts work into
//! a queue shared with the model's own thread, which loads the model, then serves
//! requests (FIFO, bounded by `request_queue`, refused with [`InferenceError::Busy`] when
//! full) before live frames. Live frames wait in one slot per source: a newer frame from
//! the same source replaces the waiting one, and the replaced frame is counted as dropped,
//! so a slow model always works on the latest picture and memory stays bounded.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use metrics::{Counter, Histogram};
use parking_lot::{Condvar, Mutex, RwLock};
use serde::Serialize;
use tokio::sync::oneshot;

use super::detector::{Detector, ModelInfo};
use super::frame::{self, ImageLimits};
use super::{runtime, DetectOptions, Detections, Frame, InferenceError, ModelConfig};
use crate::telemetry;

/// Server → `InferenceActor`: detect on an encoded JPEG/PNG; answered when done.
#[derive(Message)]
#[rtype(result = "Result<Detections, InferenceError>")]
pub struct DetectImage {
    /// The encoded image.
    pub image: Bytes,
    /// Per-request threshold and class filter.
    pub options: DetectOptions,
    /// Size limits for decoding.
    pub limits: ImageLimits,
}

/// Camera/source → `InferenceActor`: detect on a live frame; the result goes to `reply_to`.
/// A newer frame from the same source replaces this one while it waits.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DetectFrame {
    /// Source id (one waiting slot per source).
    pub source: Arc<str>,
    /// Frame number within the source.
    pub number: u64,
    /// The frame, shared with whoever else reads it.
    pub frame: Arc<Frame>,
    /// Who gets the result.
    pub reply_to: Recipient<FrameDetected>,
}

/// `InferenceActor` thread → the frame's `reply_to`: the result of a [`DetectFrame`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct FrameDetected {
    /// Source id.
    pub source: Arc<str>,
    /// Frame number.
    pub number: u64,
    /// The frame that was analysed.
    pub frame: Arc<Frame>,
    /// Detections, or why there are none.
    pub result: Result<Detections, InferenceError>,
}

/// Whether a model can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    /// The thread is loading the runtime or the model.
    Loading,
    /// Serving.
    Ready,
    /// Loading failed; see the error.
    Failed,
    /// The actor stopped.
    Stopped,
}

/// A model's state and what was read from it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    /// State.
    pub state: ModelState,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Inputs, outputs and classes once loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ModelInfo>,
}

/// Frame counters of one model, for `/api/pipelines` without asking the thread.
#[derive(Debug, Default, Serialize)]
pub struct ModelStats {
    /// Frames and images run through the model.
    pub processed: AtomicU64,
    /// Live frames replaced by a newer one before they ran.
    pub dropped: AtomicU64,
    /// Requests refused because the queue was full.
    pub rejected: AtomicU64,
    /// Runs that failed (bad image, runtime error).
    pub failed: AtomicU64,
    /// Total `Session::run` time in microseconds (for the mean).
    pub inference_us: AtomicU64,
}

struct RequestJob {
    image: Bytes,
    options: DetectOptions,
    limits: ImageLimits,
    reply: oneshot::Sender<Result<Detections, InferenceError>>,
}

#[derive(Default)]
struct WorkQueue {
    requests: VecDeque<RequestJob>,
    frames: VecDeque<DetectFrame>,
    closed: bool,
}

struct Metrics {
    latency: Histogram,
    processed: Counter,
    dropped: Counter,
    rejected: Counter,
    failed: Counter,
}

/// State shared by the actor, its thread and readers such as `/api/pipelines`.
pub struct Shared {
    name: Arc<str>,
    queue: Mutex<WorkQueue>,
    wake: Condvar,
    status: RwLock<ModelStatus>,
    /// Counters.
    pub stats: ModelStats,
    metrics: Metrics,
    request_limit: usize,
}

impl Shared {
    /// The model's current status.
    pub fn status(&self) -> ModelStatus {
        self.status.read().clone()
    }

    /// Requests and frames waiting.
    pub fn waiting(&self) -> (usize, usize) {
        let q = self.queue.lock();
        (q.requests.len(), q.frames.len())
    }

    fn set_status(&self, state: ModelState, error: Option<String>, info: Option<ModelInfo>) {
        *self.status.write() = ModelStatus { state, error, info };
    }
}

/// One model's actor.
pub struct InferenceActor {
    shared: Arc<Shared>,
}

impl InferenceActor {
    /// Starts the model's thread (which loads the runtime from `library`, then the model)
    /// and returns the actor, not yet started, with the shared state readers use.
    pub fn new(config: ModelConfig, library: PathBuf) -> (Self, Arc<Shared>) {
        let labels = [("model", config.name.clone())];
        let shared = Arc::new(Shared {
            name: Arc::from(config.name.as_str()),
            queue: Mutex::new(WorkQueue::default()),
            wake: Condvar::new(),
            status: RwLock::new(ModelStatus {
                state: ModelState::Loading,
                error: None,
                info: None,
            }),
            stats: ModelStats::default(),
            metrics: Metrics {
                latency: metrics::histogram!(telemetry::INFERENCE_LATENCY, &labels),
                processed: frames_counter(&config.name, "processed"),
                dropped: frames_counter(&config.name, "dropped"),
                rejected: frames_counter(&config.name, "rejected"),
                failed: frames_counter(&config.name, "failed"),
            },
            request_limit: config.request_queue,
        });
        let thread_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("inference-{}", config.name))
            .spawn(move || serve(thread_shared, config, library));
        if let Err(e) = spawned {
            shared.set_status(
                ModelState::Failed,
                Some(format!("cannot start the inference thread: {e}")),
                None,
            );
        }
        (
            Self {
                shared: shared.clone(),
            },
            shared,
        )
    }
}

fn frames_counter(model: &str, outcome: &'static str) -> Counter {
    metrics::counter!(telemetry::INFERENCE_FRAMES, "model" => model.to_string(), "outcome" => outcome)
}

impl Actor for InferenceActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.shared.queue.lock().closed = true;
        self.shared.wake.notify_all();
        let status = self.shared.status();
        self.shared
            .set_status(ModelState::Stopped, status.error, status.info);
    }
}

impl Handler<DetectImage> for InferenceActor {
    type Result = ResponseFuture<Result<Detections, InferenceError>>;

    fn handle(&mut self, msg: DetectImage, _: &mut Self::Context) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        let shared = self.shared.clone();
        let refused = {
            let mut q = shared.queue.lock();
            if q.closed {
                Some(InferenceError::ModelUnavailable {
                    model: shared.name.to_string(),
                    reason: "the model is stopping".into(),
                })
            } else if q.requests.len() >= shared.request_limit {
                Some(InferenceError::Busy(shared.name.to_string()))
            } else {
                q.requests.push_back(RequestJob {
                    image: msg.image,
                    options: msg.options,
                    limits: msg.limits,
                    reply,
                });
                None
            }
        };
        if let Some(error) = refused {
            if matches!(error, InferenceError::Busy(_)) {
                shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                shared.metrics.rejected.increment(1);
            }
            return Box::pin(async move { Err(error) });
        }
        shared.wake.notify_one();
        let name = shared.name.to_string();
        Box::pin(async move {
            answer.await.unwrap_or_else(|_| {
                Err(InferenceError::ModelUnavailable {
                    model: name,
                    reason: "the inference thread stopped".into(),
                })
            })
        })
    }
}

impl Handler<DetectFrame> for InferenceActor {
    type Result = ();

    fn handle(&mut self, msg: DetectFrame, _: &mut Self::Context) {
        let shared = &self.shared;
        let replaced = {
            let mut q = shared.queue.lock();
            if q.closed {
                return;
            }
            match q.frames.iter_mut().find(|f| f.source == msg.source) {
                Some(waiting) => Some(std::mem::replace(waiting, msg)),
                None => {
                    q.frames.push_back(msg);
                    None
                }
            }
        };
        if let Some(old) = replaced {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            shared.metrics.dropped.increment(1);
            // The source counts its own dropped frames from this answer.
            old.reply_to.do_send(FrameDetected {
                source: old.source,
                number: old.number,
                frame: old.frame,
                result: Err(InferenceError::Superseded),
            });
        }
        shared.wake.notify_one();
    }
}

enum Job {
    Request(RequestJob),
    Frame(DetectFrame),
}

/// The model thread: load, then serve until the actor stops.
fn serve(shared: Arc<Shared>, config: ModelConfig, library: PathBuf) {
    let loaded = runtime::load(&library).and_then(|rt| Detector::load(&rt, &config));
    let mut detector = match loaded {
        Ok(detector) => {
            tracing::info!(model = %config.name, kind = config.kind.as_str(), path = %config.path.display(), "model loaded");
            shared.set_status(ModelState::Ready, None, Some(detector.info().clone()));
            Some(detector)
        }
        Err(error) => {
            tracing::error!(model = %config.name, %error, "model not loaded");
            shared.set_status(ModelState::Failed, Some(error.to_string()), None);
            None
        }
    };
    let unavailable = || {
        let reason = shared.status().error.unwrap_or_default();
        InferenceError::ModelUnavailable {
            model: config.name.clone(),
            reason,
        }
    };
    while let Some(job) = next_job(&shared) {
        match job {
            Job::Request(job) => {
                let result = match detector.as_mut() {
                    None => Err(unavailable()),
                    Some(d) => run_guarded(
                        &shared,
                        d,
                        || {
                            let started = Instant::now();
                            let frame = frame::decode(&job.image, &job.limits)?;
                            let decode_ms = started.elapsed().as_secs_f64() * 1e3;
                            Ok((frame, decode_ms))
                        },
                        &job.options,
                    ),
                };
                // The requester may have given up (timeout); nothing to do then.
                let _ = job.reply.send(result);
            }
            Job::Frame(job) => {
                let result = match detector.as_mut() {
                    None => Err(unavailable()),
                    Some(d) => {
                        let frame = job.frame.clone();
                        run_guarded(
                            &shared,
                            d,
                            || Ok(((*frame).clone(), 0.0)),
                            &DetectOptions::default(),
                        )
                    }
                };
                job.reply_to.do_send(FrameDetected {
                    source: job.source,
                    number: job.number,
                    frame: job.frame,
                    result,
                });
            }
        }
    }
}

fn next_job(shared: &Shared) -> Option<Job> {
    let mut q = shared.queue.lock();
    loop {
        if q.closed {
            return None;
        }
        if let Some(job) = q.requests.pop_front() {
            return Some(Job::Request(job));
        }
        if let Some(job) = q.frames.pop_front() {
            return Some(Job::Frame(job));
        }
        shared.wake.wait(&mut q);
    }
}

/// Runs one frame, turning a panic inside the model code into an error and counting it.
fn run_guarded(
    shared: &Shared,
    detector: &mut Detector,
    frame: impl FnOnce() -> Result<(Frame, f64), InferenceError>,
    options: &DetectOptions,
) -> Result<Detections, InferenceError> {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let (frame, decode_ms) = frame()?;
        let mut result = detector.detect(&frame, options)?;
        result.timings.decode_ms = decode_ms;
        Ok(result)
    }))
    .unwrap_or_else(|_| Err(InferenceError::Failed("the model code panicked".into())));
    match &outcome {
        Ok(result) => {
            let seconds = result.timings.inference_ms / 1e3;
            shared.metrics.latency.record(seconds);
            shared.metrics.processed.increment(1);
            shared.stats.processed.fetch_add(1, Ordering::Relaxed);
            shared
                .stats
                .inference_us
                .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        }
        Err(_) => {
            shared.metrics.failed.increment(1);
            shared.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    outcome
}
