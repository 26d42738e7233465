//! `synopticon backup`, `restore` and `key new`: the store's contents to a file and back,
//! for moving a server to another machine or database, and keys for sealing its secrets.
//!
//! A backup is JSON (`"format": "synopticon-store"`) holding every record as stored, so
//! secrets in it stay sealed: it can be restored only where the same key is configured.

use std::path::Path;

use anyhow::{bail, Context, Result};
use synopticon_actors::secrets::Sealer;
use synopticon_actors::store::{write_private, Store};

use crate::configuration::Settings;

/// Writes the store named by `settings` to `out` (a new file, mode 0600; `-` is stdout).
/// A running server may keep writing: the copy is one consistent read.
pub async fn backup(settings: &Settings, out: &Path) -> Result<String> {
    let store = open(settings).await?;
    let dump = store
        .export()
        .await
        .with_context(|| format!("reading the store {}", store.name()))?;
    let text = serde_json::to_string_pretty(&dump)?;
    let summary = format!(
        "{} record(s), {} device(s) from {}",
        dump["records"].as_array().map_or(0, Vec::len),
        dump["devices"].as_array().map_or(0, Vec::len),
        store.name()
    );
    if out == Path::new("-") {
        println!("{text}");
    } else {
        write_private(out, &text).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!("{} exists: name a new file", out.display())
            } else {
                anyhow::anyhow!("cannot write {}: {e}", out.display())
            }
        })?;
    }
    Ok(summary)
}

/// Loads the backup `input` into the (empty) store named by `settings`.
pub async fn restore(settings: &Settings, input: &Path) -> Result<String> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read {}", input.display()))?;
    let dump: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", input.display()))?;
    let store = open(settings).await?;
    match store.import(&dump).await {
        Ok(count) => Ok(format!("{count} record(s) restored into {}", store.name())),
        Err(e) => bail!("{e}; nothing was restored"),
    }
}

/// A new key for `store.secret_key`.
pub fn new_key() -> Result<String> {
    Sealer::generate_key().map_err(anyhow::Error::msg)
}

async fn open(settings: &Settings) -> Result<Store> {
    if settings.store.url.trim() == "memory" {
        bail!("store.url is \"memory\": there is nothing kept to back up or restore into");
    }
    Store::open(&settings.store.settings())
        .await
        .map_err(anyhow::Error::msg)
}
