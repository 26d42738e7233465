//! Every recording of this server: started by sessions, kept in the store (so the list,
//! and a recording running when the server stopped, come back after a restart), deleted
//! by age and total size.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use chrono::Utc;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

use super::recorder::{Header, Recorder, Start};
use super::{RecordingInfo, RecordingSettings, RecordingSpec, RecordingState};
use crate::session::spec::SessionConfig;
use crate::store::{Kind, Store, StoreError};

/// What can go wrong with a recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// No such recording (404).
    #[error("recording {0:?} not found")]
    NotFound(String),
    /// Not possible now (409): deleting a running recording, too many running.
    #[error("{0}")]
    Conflict(String),
    /// The file could not be made (503).
    #[error("{0}")]
    Unavailable(String),
    /// Not a recording (422).
    #[error("{0}")]
    Invalid(String),
    /// Larger than an import may be, as sent or unpacked (413).
    #[error("{0}")]
    TooLarge(String),
    /// The store could not keep it (503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every recording of this server. Cheap to clone; `Default` is a hub that refuses to
/// record (tools and tests without a server).
#[derive(Clone, Default)]
pub struct RecordingHub {
    inner: Option<Arc<Hub>>,
}

impl std::fmt::Debug for RecordingHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingHub")
            .field("dir", &self.inner.as_ref().map(|h| &h.settings.dir))
            .finish()
    }
}

struct Hub {
    settings: RecordingSettings,
    /// Recordings running (or finishing) now.
    active: Mutex<BTreeMap<String, Arc<Recorder>>>,
    /// Ids whose state changed (started, finished), for the keeper to write.
    notes: mpsc::UnboundedSender<String>,
    notes_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    store: OnceLock<Arc<Store>>,
    /// Model name → file, for the checksums a recording's metadata carries.
    models: Vec<(String, PathBuf)>,
    /// Recordings deleted: a late write of their state must not bring them back.
    deleted: Mutex<std::collections::HashSet<String>>,
    /// File → (size, modified, SHA-256): a model is hashed once.
    checksums: Checksums,
}

/// File → (size, modified, SHA-256).
type Checksums = Mutex<HashMap<PathBuf, (u64, Option<SystemTime>, String)>>;

/// Why recordings stop when the server shuts down cleanly: they go on after the restart.
pub const SHUTDOWN: &str = "the server shut down";
/// What that becomes once a restart has continued them.
const RESTARTED: &str = "the server shut down; continued after the restart";

/// How often the keeper writes running recordings' counters to the store.
const KEEP_EVERY: Duration = Duration::from_secs(2);
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// How long a stop waits for the file to be finished.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

impl RecordingHub {
    /// A hub writing into `settings.dir`; `models` are named with their checksums in each
    /// recording.
    pub fn new(settings: RecordingSettings, models: Vec<(String, PathBuf)>) -> Self {
        let (notes, rx) = mpsc::unbounded_channel();
        Self {
            inner: Some(Arc::new(Hub {
                settings,
                active: Mutex::new(BTreeMap::new()),
                notes,
                notes_rx: Mutex::new(Some(rx)),
                store: OnceLock::new(),
                models,
                deleted: Mutex::new(std::collections::HashSet::new()),
                checksums: Mutex::new(HashMap::new()),
            })),
        }
    }

    fn hub(&self) -> Result<&Arc<Hub>, RecordingError> {
        self.inner
            .as_ref()
            .ok_or_else(|| RecordingError::Unavailable("recording is not available here".into()))
    }

    /// The settings, when recording is available.
    pub fn settings(&self) -> Option<&RecordingSettings> {
        self.inner.as_ref().map(|h| &h.settings)
    }

    /// Starts recording the session configured as `config`. Called by the session, which
    /// then offers it every event.
    pub fn start(
        &self,
        config: &SessionConfig,
        spec: RecordingSpec,
        auto: bool,
        continues: Option<String>,
    ) -> Result<Arc<Recorder>, RecordingError> {
        let hub = self.hub()?;
        let running = hub.active.lock().values().filter(|r| !r.is_done()).count();
        if running >= hub.settings.max_active {
            return Err(RecordingError::Conflict(format!(
                "this server already runs its maximum of {} recordings (recording.max_active)",
                hub.settings.max_active
            )));
        }
        let now = Utc::now();
        let id = format!(
            "{}-{}-{}",
            config.id,
            now.format("%Y%m%dT%H%M%SZ"),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let notes = hub.notes.clone();
        let done_id = id.clone();
        let recorder = Recorder::start(
            &hub.settings,
            Start {
                id: id.clone(),
                session: &config.id,
                header: self.header(hub, &id, config, &spec),
                spec,
                auto,
                continues,
                on_done: Box::new(move || {
                    let _ = notes.send(done_id);
                }),
                holds: heard(config),
            },
        )
        .map_err(RecordingError::Unavailable)?;
        hub.active.lock().insert(id.clone(), recorder.clone());
        let _ = hub.notes.send(id);
        tracing::info!(recording = %recorder.id(), session = %config.id, "recording started");
        Ok(recorder)
    }

    /// The metadata records of a new recording.
    fn header(&self, hub: &Hub, id: &str, config: &SessionConfig, spec: &RecordingSpec) -> Header {
        let text = |v: &Value| serde_json::to_string(v).unwrap_or_default();
        let mut synopticon = BTreeMap::new();
        synopticon.insert("server_version".into(), env!("CARGO_PKG_VERSION").into());
        synopticon.insert("recording".into(), id.into());
        synopticon.insert("session".into(), config.id.clone());
        synopticon.insert("started_at".into(), Utc::now().to_rfc3339());
        synopticon.insert(
            "spec".into(),
            text(&serde_json::to_value(spec).unwrap_or(Value::Null)),
        );
        // Passwords, tokens and secret headers are hidden, as in every answer: the file
        // goes to anyone who may read the session.
        let mut shown = serde_json::to_value(config).unwrap_or(Value::Null);
        crate::secrets::redact(&mut shown);
        let mut session = BTreeMap::new();
        session.insert("config".into(), text(&shown));
        // Hashed at start (attach_store), never here: this runs on the session's thread.
        let mut models = BTreeMap::new();
        let sums = hub.checksums.lock();
        for (name, path) in &hub.models {
            let sum = sums
                .get(path)
                .map_or_else(|| "not hashed".to_string(), |(_, _, sum)| sum.clone());
            models.insert(name.clone(), format!("{} {}", sum, path.display()));
        }
        drop(sums);
        let mut metadata = vec![
            ("synopticon".to_string(), synopticon),
            ("session".to_string(), session),
            ("models".to_string(), models),
        ];
        if spec.label.is_some() || !spec.metadata.is_empty() {
            let mut study = spec.metadata.clone();
            if let Some(label) = &spec.label {
                study.insert("label".into(), label.clone());
            }
            metadata.push(("study".to_string(), study));
        }
        Header { metadata }
    }

    /// Starts the keeper (on the current Tokio runtime): it writes recordings to `store`
    /// as they start, progress and finish, and applies retention. Recordings the store
    /// says were running when the server stopped are marked interrupted; the ones
    /// started over REST are returned, for their sessions to record again.
    pub async fn attach_store(&self, store: Arc<Store>) -> Result<Vec<RecordingInfo>, StoreError> {
        let Some(hub) = &self.inner else {
            return Ok(Vec::new());
        };
        let _ = hub.store.set(store.clone());
        // The models' checksums, once, off the async threads (files of hundreds of MB).
        let (models, hashing) = (hub.models.clone(), hub.clone());
        let _ = tokio::task::spawn_blocking(move || {
            for (_, path) in &models {
                if let Err(e) = checksum(&hashing.checksums, path) {
                    tracing::debug!(model = %path.display(), error = %e, "a model's checksum cannot be taken");
                }
            }
        })
        .await;
        let mut resume = Vec::new();
        for (id, body) in store.list(Kind::Recording).await? {
            let Ok(mut info) = serde_json::from_value::<RecordingInfo>(body) else {
                tracing::warn!(recording = %id, "a recording in the store cannot be read; left as it is");
                continue;
            };
            // Finished at a clean shutdown: it goes on in a new file, once.
            if info.state == RecordingState::Stopped
                && info.stop_reason.as_deref() == Some(SHUTDOWN)
            {
                info.stop_reason = Some(RESTARTED.into());
                put_info(&store, &info).await?;
                if !info.auto {
                    resume.push(info);
                }
                continue;
            }
            let running = matches!(
                info.state,
                RecordingState::Recording | RecordingState::Stopping
            );
            if !running || hub.active.lock().contains_key(&id) {
                continue;
            }
            // One a user had asked to stop is not started again.
            let asked_to_stop = info.state == RecordingState::Stopping;
            info.state = RecordingState::Interrupted;
            info.stop_reason = Some("the server stopped while recording".into());
            // Whose data it holds was kept every few seconds, the file flushed every
            // second: what the last moments wrote may be missing from the kept list, so it
            // is not known (only tokens without a source, device or event limit see it).
            info.holds = None;
            info.stopped_at.get_or_insert_with(Utc::now);
            if let Ok(m) = std::fs::metadata(hub.settings.dir.join(&info.file)) {
                info.bytes = m.len();
            }
            put_info(&store, &info).await?;
            tracing::warn!(recording = %id, "recording interrupted by a restart: readable up to its last flush");
            if !info.auto && !asked_to_stop {
                resume.push(info);
            }
        }
        if let Some(rx) = hub.notes_rx.lock().take() {
            tokio::spawn(keeper(self.clone(), rx));
        }
        Ok(resume)
    }

    /// Writes a recording's state to the store now (not one deleted meanwhile).
    pub async fn keep(&self, recorder: &Recorder) -> Result<(), RecordingError> {
        let hub = self.hub()?;
        if let Some(store) = hub.store.get() {
            let info = recorder.info();
            if hub.deleted.lock().contains(&info.id) {
                return Ok(());
            }
            put_info(store, &info).await?;
            // Deleted while it was being written: undone.
            if hub.deleted.lock().contains(&info.id) {
                store.delete(Kind::Recording, &info.id).await?;
            }
        }
        Ok(())
    }

    /// Stops every running recording (the server is shutting down), waits at most
    /// `deadline` for their files to be finished, and keeps their final state.
    pub async fn stop_all(&self, reason: &str, deadline: Duration) {
        let Some(hub) = &self.inner else { return };
        let running: Vec<_> = hub.active.lock().values().cloned().collect();
        for r in &running {
            r.stop(reason);
        }
        let until = tokio::time::Instant::now() + deadline;
        for r in running {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if !r.finished(left).await {
                tracing::warn!(recording = %r.id(), "a recording's file was not finished in time; it will read as interrupted");
                continue;
            }
            if let Err(error) = self.keep(&r).await {
                tracing::warn!(recording = %r.id(), %error, "cannot keep a recording's final state");
            }
        }
    }

    /// Takes in an MCAP file recorded elsewhere (`synopticon replay` sends the file it
    /// plays): checked by reading it and written to the folder. Reading and writing block:
    /// call it off the async threads, then [`keep_imported`](Self::keep_imported).
    pub fn import(&self, bytes: &[u8], name: &str) -> Result<RecordingInfo, RecordingError> {
        let hub = self.hub()?;
        super::reader::check_unpacked_size(bytes, hub.settings.max_import_bytes)
            .map_err(RecordingError::TooLarge)?;
        let recorded = super::reader::read_bytes(bytes, &super::reader::Keep::everything())
            .map_err(RecordingError::Invalid)?;
        let frames: usize = recorded.detections.values().map(Vec::len).sum();
        if recorded.events.is_empty() && frames == 0 {
            return Err(RecordingError::Invalid(
                "the file holds no events and no detections of a Synopticon recording".into(),
            ));
        }
        let about = recorded.metadata.get("synopticon");
        let session = about
            .and_then(|m| m.get("session"))
            .filter(|s| crate::session::spec::check_session_id(s).is_ok())
            .cloned()
            .unwrap_or_else(|| "imported".to_string());
        let spec = about
            .and_then(|m| m.get("spec"))
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let now = Utc::now();
        let id = format!(
            "{session}-{}-{}",
            now.format("%Y%m%dT%H%M%SZ"),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let file = format!("{id}.mcap");
        std::fs::create_dir_all(&hub.settings.dir)
            .and_then(|()| std::fs::write(hub.settings.dir.join(&file), bytes))
            .map_err(|e| RecordingError::Unavailable(format!("cannot write {file}: {e}")))?;
        let logs = recorded
            .events
            .iter()
            .map(|e| e.log_ns)
            .chain(recorded.detections.values().flatten().map(|f| f.log_ns));
        let (first, last) = logs.fold((u64::MAX, 0), |(lo, hi), t| (lo.min(t), hi.max(t)));
        let started_at = about
            .and_then(|m| m.get("started_at"))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(now, |t| t.with_timezone(&Utc));
        let info = RecordingInfo {
            id: id.clone(),
            session,
            state: RecordingState::Stopped,
            started_at,
            stopped_at: Some(now),
            stop_reason: Some(format!("{}{name}", super::IMPORTED_FROM)),
            file,
            bytes: bytes.len() as u64,
            events: recorded.events.len() as u64,
            detections: frames as u64,
            frames: 0,
            dropped: 0,
            first_seq: recorded.events.first().map(|e| e.seq),
            last_seq: recorded.events.last().map(|e| e.seq),
            duration_s: last.saturating_sub(first.min(last)) as f64 / 1e9,
            spec,
            auto: false,
            continues: None,
            error: recorded
                .truncated
                .map(|cut| format!("the file was cut short; read up to: {cut}")),
            // A file says what it likes about itself: whose data it holds is not taken
            // from it, and only an unscoped token sees it.
            holds: None,
            imported: true,
        };
        Ok(info)
    }

    /// Keeps an imported recording in the store; its file goes when that fails.
    pub async fn keep_imported(&self, info: &RecordingInfo) -> Result<(), RecordingError> {
        let hub = self.hub()?;
        if let Some(store) = hub.store.get() {
            let kept = put_info(store, info).await;
            if let Err(e) = kept {
                let _ = std::fs::remove_file(hub.settings.dir.join(&info.file));
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// A running (or finishing) recording.
    pub fn live(&self, id: &str) -> Option<Arc<Recorder>> {
        self.inner.as_ref()?.active.lock().get(id).cloned()
    }

    /// Running recordings of `session`.
    pub fn live_of(&self, session: &str) -> Vec<Arc<Recorder>> {
        self.inner.as_ref().map_or_else(Vec::new, |h| {
            h.active
                .lock()
                .values()
                .filter(|r| r.session() == session && !r.is_done())
                .cloned()
                .collect()
        })
    }

    /// Every recording, newest first: running ones with their counters as of now.
    pub async fn list(&self) -> Result<Vec<RecordingInfo>, RecordingError> {
        let hub = self.hub()?;
        let mut all: BTreeMap<String, RecordingInfo> = BTreeMap::new();
        if let Some(store) = hub.store.get() {
            for (id, body) in store.list(Kind::Recording).await? {
                if let Ok(info) = serde_json::from_value(body) {
                    all.insert(id, info);
                }
            }
        }
        for (id, r) in hub.active.lock().iter() {
            all.insert(id.clone(), r.info());
        }
        let mut list: Vec<_> = all.into_values().collect();
        list.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        Ok(list)
    }

    /// One recording.
    pub async fn get(&self, id: &str) -> Result<RecordingInfo, RecordingError> {
        let hub = self.hub()?;
        if let Some(r) = self.live(id) {
            return Ok(r.info());
        }
        let store = hub
            .store
            .get()
            .ok_or_else(|| RecordingError::NotFound(id.to_string()))?;
        let body = store
            .get(Kind::Recording, id)
            .await?
            .ok_or_else(|| RecordingError::NotFound(id.to_string()))?;
        serde_json::from_value(body)
            .map_err(|e| StoreError::Damaged(format!("recording {id}: {e}")).into())
    }

    /// Stops a recording, waits for its file to be finished and keeps its final state.
    pub async fn stop(&self, id: &str, reason: &str) -> Result<RecordingInfo, RecordingError> {
        let Some(recorder) = self.live(id) else {
            // Already finished: its state as kept.
            return self.get(id).await;
        };
        recorder.stop(reason);
        recorder.finished(STOP_DEADLINE).await;
        self.keep(&recorder).await?;
        Ok(recorder.info())
    }

    /// The file of a recording.
    pub fn path(&self, info: &RecordingInfo) -> Option<PathBuf> {
        Some(self.settings()?.dir.join(&info.file))
    }

    /// Deletes a finished recording and its file.
    pub async fn delete(&self, id: &str) -> Result<(), RecordingError> {
        let hub = self.hub()?;
        if self.live(id).is_some_and(|r| !r.is_done()) {
            return Err(RecordingError::Conflict(format!(
                "recording {id:?} is running: stop it first"
            )));
        }
        let info = self.get(id).await?;
        remove(hub, &info).await?;
        Ok(())
    }

    /// Deletes finished recordings older than `max_age`, then the oldest while all
    /// together are larger than `max_total_bytes`. Returns the ids deleted.
    pub async fn apply_retention(&self) -> Result<Vec<String>, RecordingError> {
        let hub = self.hub()?;
        let s = &hub.settings;
        if s.max_age.is_none() && s.max_total_bytes.is_none() {
            return Ok(Vec::new());
        }
        let mut all = self.list().await?;
        all.reverse(); // oldest first
        let mut total: u64 = all.iter().map(|r| r.bytes).sum();
        let mut deleted = Vec::new();
        let now = Utc::now();
        for info in all {
            let finished = !matches!(
                info.state,
                RecordingState::Recording | RecordingState::Stopping
            );
            if !finished {
                continue;
            }
            let old = s.max_age.is_some_and(|age| {
                let end = info.stopped_at.unwrap_or(info.started_at);
                (now - end).to_std().is_ok_and(|d| d > age)
            });
            let over = s.max_total_bytes.is_some_and(|max| total > max);
            if old || over {
                // One that cannot be deleted does not stop the others.
                if let Err(error) = remove(hub, &info).await {
                    tracing::warn!(recording = %info.id, %error, "retention cannot delete a recording");
                    continue;
                }
                total = total.saturating_sub(info.bytes);
                tracing::info!(recording = %info.id, old, over, "recording deleted by retention");
                deleted.push(info.id);
            }
        }
        Ok(deleted)
    }
}

/// What a recording holds before anything is written: the sources and device patterns
/// the session's configuration names, which its header carries.
fn heard(config: &SessionConfig) -> super::Contents {
    let mut holds = super::Contents::empty();
    for source in &config.sources {
        holds.add_source(source);
    }
    for pattern in &config.devices {
        holds.add_device(pattern);
    }
    holds
}

/// Keeps `info` in the store.
async fn put_info(store: &Store, info: &RecordingInfo) -> Result<(), StoreError> {
    store
        .put(
            Kind::Recording,
            &info.id,
            &serde_json::to_value(info).unwrap_or(Value::Null),
        )
        .await
}

async fn remove(hub: &Hub, info: &RecordingInfo) -> Result<(), RecordingError> {
    // The file first: a file left behind by a failed unlink is one retention still sees.
    match std::fs::remove_file(hub.settings.dir.join(&info.file)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(RecordingError::Unavailable(format!(
                "cannot delete {}: {e}",
                info.file
            )))
        }
    }
    hub.deleted.lock().insert(info.id.clone());
    hub.active.lock().remove(&info.id);
    if let Some(store) = hub.store.get() {
        store.delete(Kind::Recording, &info.id).await?;
    }
    Ok(())
}

/// Writes recordings to the store as they change, and applies retention.
async fn keeper(hub: RecordingHub, mut notes: mpsc::UnboundedReceiver<String>) {
    let mut keep = tokio::time::interval(KEEP_EVERY);
    let mut retention = tokio::time::interval(RETENTION_EVERY);
    loop {
        tokio::select! {
            note = notes.recv() => {
                let Some(id) = note else { return };
                if let Some(r) = hub.live(&id) {
                    if let Err(error) = hub.keep(&r).await {
                        tracing::warn!(recording = %id, %error, "cannot keep a recording's state");
                        continue;
                    }
                    if r.is_done() {
                        if let Some(h) = &hub.inner {
                            h.active.lock().remove(&id);
                        }
                        let info = r.info();
                        tracing::info!(recording = %id, events = info.events, bytes = info.bytes, "recording finished");
                    }
                }
            }
            _ = keep.tick() => {
                let running: Vec<_> = hub.inner.as_ref().map_or_else(Vec::new, |h| h.active.lock().values().cloned().collect());
                for r in running {
                    if let Err(error) = hub.keep(&r).await {
                        tracing::warn!(recording = %r.id(), %error, "cannot keep a recording's progress");
                    }
                }
            }
            _ = retention.tick() => {
                if let Err(error) = hub.apply_retention().await {
                    tracing::warn!(%error, "recording retention failed");
                }
            }
        }
    }
}

/// SHA-256 of a file, hex; cached while its size and time stay.
fn checksum(cache: &Checksums, path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let key = (meta.len(), meta.modified().ok());
    if let Some((len, modified, sum)) = cache.lock().get(path) {
        if (*len, *modified) == key {
            return Ok(sum.clone());
        }
    }
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let sum: String = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let sum = format!("sha256:{sum}");
    cache
        .lock()
        .insert(path.to_path_buf(), (key.0, key.1, sum.clone()));
    Ok(sum)
}
