//! `[store]` (where what is made over REST is kept) and `[redis]` (the server's own Redis).

use serde::{Deserialize, Serialize};
use synopticon_actors::validation::Report;

/// The server's own Redis connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`; empty: none.
    pub url: String,
}

/// The store (docs/STORAGE.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (an embedded file), `postgres://user:pass@host:port/db` (shared by
    /// several instances) or `memory` (nothing kept).
    pub url: String,
    /// Base64 key (32 bytes) sealing the secrets inside kept configurations; empty: read
    /// from (or made in) `key_file`. Instances sharing a database need the same key.
    pub secret_key: String,
    /// Where the key is kept when `secret_key` is empty; empty: beside an SQLite file, else
    /// `data/secret.key`.
    pub key_file: String,
    /// This instance's name: sessions and sources it makes are its own, and only it
    /// restores them (instances sharing a database share templates, tokens, devices).
    pub instance: String,
}

impl StoreConfig {
    /// The settings the store opens with.
    pub fn settings(&self) -> synopticon_actors::store::StoreSettings {
        synopticon_actors::store::StoreSettings {
            url: self.url.clone(),
            secret_key: self.secret_key.clone(),
            key_file: self.key_file.clone(),
            instance: self.instance.clone(),
        }
    }
}

impl StoreConfig {
    /// Checks `[store]`.
    pub fn validate(&self, r: &mut Report) {
        let store = self;
        if !(store.url == "memory"
            || store.url.starts_with("sqlite://")
            || store.url.starts_with("postgres://")
            || store.url.starts_with("postgresql://"))
        {
            r.error(format!(
                "store.url: {:?} must be sqlite://PATH, postgres://user:pass@host:port/db or memory",
                synopticon_actors::secrets::redact_url(&store.url).unwrap_or_else(|| store.url.clone())
            ));
        }
        if !store.secret_key.is_empty() {
            if let Err(e) = synopticon_actors::secrets::Sealer::parse_key(&store.secret_key) {
                r.error(format!(
                    "store.secret_key: {e}; make one with `synopticon key new`"
                ));
            }
        }
        if store.instance.is_empty()
            || !store
                .instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            r.error(format!(
                "store.instance: {:?} must be letters, digits, - _ or .",
                store.instance
            ));
        }
        if store.url.starts_with("postgres") && store.secret_key.is_empty() {
            r.warn("store.secret_key: empty, so this instance seals secrets with a key of its own (store.key_file); instances sharing the database need one key: give them the same store.secret_key");
        }
    }
}

impl RedisSettings {
    /// Checks `[redis]`.
    pub fn validate(&self, r: &mut Report) {
        let redis = &self.url;
        if !(redis.is_empty() || redis.starts_with("redis://") || redis.starts_with("rediss://")) {
            r.error(format!(
                "redis.url: {:?} must be redis://[user:password@]host:port[/db] (or rediss://), or empty",
                synopticon_actors::secrets::redact_url(redis).unwrap_or_else(|| redis.clone())
            ));
        }
    }
}
