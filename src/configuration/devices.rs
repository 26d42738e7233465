//! `[devices]`: the device registry.

use serde::{Deserialize, Serialize};
use synopticon_actors::validation::Report;

/// The device registry (docs/DEVICES.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// First part of every device channel (`device:SN123:updated`).
    pub channel_prefix: String,
    /// Devices the registry holds at most (then 503).
    pub max_devices: u64,
    /// Devices inputs may register on their own (`unknownDevices = "create"`), in all:
    /// whoever writes to an input's stream or topic could otherwise fill the registry.
    pub max_auto_registered: usize,
    /// Unknown devices inputs may register per minute, in all (a burst of as many).
    pub auto_registered_per_minute: f64,
}

impl DeviceConfig {
    /// Checks `[devices]`.
    pub fn validate(&self, r: &mut Report) {
        let prefix = &self.channel_prefix;
        if prefix.is_empty()
            || prefix.len() > 32
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            r.error(format!(
                "devices.channel_prefix: {prefix:?} must be 1-32 letters, digits, - _ or . (it starts every channel: {prefix}:SN123:updated)"
            ));
        }
        if self.max_devices == 0 {
            r.error("devices.max_devices: must be at least 1");
        }
        let per_minute = self.auto_registered_per_minute;
        if !(per_minute.is_finite() && per_minute >= 0.0) {
            r.error("devices.auto_registered_per_minute: must be 0 (none) or more");
        }
    }
}
