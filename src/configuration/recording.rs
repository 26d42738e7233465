//! `[recording]`: session recordings.

use serde::{Deserialize, Serialize};
use synopticon_actors::validation::Report;

/// `[recording]`: session recordings (docs/RECORDING.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// Folder of the `.mcap` files.
    pub dir: String,
    /// How often a recording is brought up to date on disk (a crash loses at most this).
    pub flush_interval_ms: u64,
    /// Events and frames waiting for one recording's writer; beyond, dropped (counted).
    pub queue: usize,
    /// Finished recordings older than this many days are deleted (0: kept).
    pub max_age_days: u32,
    /// The oldest finished recordings are deleted while all of them together are larger
    /// than this many MiB (0: no limit).
    pub max_total_mb: u64,
    /// Recordings running at once.
    pub max_active: usize,
    /// Largest MCAP file `POST /api/v1/recordings` takes in (what `synopticon replay`
    /// sends), in MiB: as sent, and as its chunks unpack.
    pub max_import_mb: u64,
}

impl RecordingConfig {
    /// Checks `[recording]`.
    pub fn validate(&self, r: &mut Report) {
        if self.dir.is_empty() || !(10..=60_000).contains(&self.flush_interval_ms) {
            r.error("recording: dir must be set and flush_interval_ms be 10 to 60000");
        }
        if self.queue == 0 || self.max_active == 0 {
            r.error("recording: queue and max_active must be at least 1");
        }
    }

    /// Where recordings go and how long they stay; `frame_ref_dirs` are the folders a
    /// recorded frame reference may name (`rules.frame_ref_dirs`).
    pub fn settings(
        &self,
        frame_ref_dirs: &[String],
    ) -> synopticon_actors::recording::RecordingSettings {
        let r = self;
        synopticon_actors::recording::RecordingSettings {
            dir: r.dir.clone().into(),
            flush_interval: std::time::Duration::from_millis(r.flush_interval_ms),
            queue: r.queue,
            max_age: (r.max_age_days > 0)
                .then(|| std::time::Duration::from_secs(u64::from(r.max_age_days) * 86_400)),
            max_total_bytes: (r.max_total_mb > 0).then(|| r.max_total_mb.saturating_mul(1 << 20)),
            max_active: r.max_active,
            frame_ref_dirs: frame_ref_dirs.iter().map(Into::into).collect(),
            max_import_bytes: r.max_import_mb.saturating_mul(1 << 20),
        }
    }
}
