//! The store: what the server keeps across restarts.
//!
//! Sessions (their whole configuration), templates, tokens and sources created over REST,
//! devices, and how far each session's sequence numbers are reserved. One code path for
//! every engine, sqlx's Any driver with portable SQL: an SQLite file by default (nothing to
//! install), PostgreSQL when several instances share one database, or SQLite in memory
//! (`memory`: nothing kept, for tests and throw-away runs).
//!
//! Records are JSON documents; their secrets (passwords, tokens, credential headers, URL
//! passwords) are sealed ([`crate::secrets::Sealer`]) before they are written, so the
//! database never holds them in clear. Versioned migrations run at start. Sessions and
//! sources belong to the instance that made them (`store.instance`): instances sharing a
//! database share templates, tokens and devices, each restoring only its own sessions.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor, Row};

use crate::secrets::{Sealer, KEY_LEN};

/// What a connection attempt or a write may wait for the database: a store that is down
/// answers 503 quickly instead of holding the request.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections to a database server; SQLite files get one writer.
const POOL_SIZE: u32 = 4;

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
    /// SQLite in memory: nothing survives the process.
    Memory,
}

/// The kinds of records kept as documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A session's configuration (instance-owned).
    Session,
    /// A vision source's configuration (instance-owned).
    Source,
    /// A user template (shared).
    Template,
    /// A token made over REST: its hash and scope (shared).
    Token,
    /// A broker input made over REST (shared: every processor sharing the store consumes
    /// it, as one consumer of its group).
    Input,
    /// A rule made over REST (shared).
    Rule,
    /// What an e-mail digest has gathered, and when it last went (instance-owned: each
    /// server sends its own).
    Digest,
    /// A recording of a session (instance-owned: its file is on this machine).
    Recording,
    /// A session's WebSocket history kept across restarts (instance-owned).
    History,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Source => "source",
            Kind::Template => "template",
            Kind::Token => "token",
            Kind::Input => "input",
            Kind::Rule => "rule",
            Kind::Digest => "digest",
            Kind::Recording => "recording",
            Kind::History => "history",
        }
    }

    /// Sessions and sources run on one instance; the rest is shared.
    fn owned(self) -> bool {
        matches!(
            self,
            Kind::Session | Kind::Source | Kind::Digest | Kind::Recording | Kind::History
        )
    }

    const ALL: [Kind; 9] = [
        Kind::Session,
        Kind::Source,
        Kind::Template,
        Kind::Token,
        Kind::Input,
        Kind::Rule,
        Kind::Digest,
        Kind::Recording,
        Kind::History,
    ];
}

/// How a device is named: by id or by serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKey<'a> {
    /// `/devices/{id}`.
    Id(&'a str),
    /// `/devices/sn/{serial}`.
    Serial(&'a str),
}

/// How the store was asked to open.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `sqlite://PATH`, `postgres://user:pass@host:port/db` or `memory`.
    pub url: String,
    /// Base64 key (32 bytes) sealing secrets; empty: read from (or made in) `key_file`.
    pub secret_key: String,
    /// Where the key is kept when `secret_key` is empty; empty: next to an SQLite file,
    /// `data/secret.key` otherwise.
    pub key_file: String,
    /// This instance's name: the owner of the sessions and sources it makes.
    pub instance: String,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the write: try again later (503).
    #[error("the store ({store}) is unavailable: {cause}")]
    Unavailable {
        /// The store, as shown (no password).
        store: String,
        /// What went wrong.
        cause: String,
    },
    /// A unique key is taken (409).
    #[error("{0}")]
    Conflict(String),
    /// A record cannot be read (damaged, or sealed with another key).
    #[error("the store holds a record it cannot read ({0})")]
    Damaged(String),
}

/// The store.
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    /// The store as named in messages (a path, a URL without password, `memory`).
    shown: String,
    sealer: Sealer,
    instance: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("engine", &self.engine)
            .field("store", &self.shown)
            .finish_non_exhaustive()
    }
}

/// The migrations, in order; each runs once, in a transaction, and is recorded.
const MIGRATIONS: &[(i64, &str, &[&str])] = &[(
    1,
    "records, devices, sequences",
    &[
        "CREATE TABLE records (kind TEXT NOT NULL, owner TEXT NOT NULL, id TEXT NOT NULL, \
         body TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (kind, owner, id))",
        "CREATE TABLE devices (id TEXT PRIMARY KEY, serial TEXT NOT NULL UNIQUE, \
         body TEXT NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE TABLE sequences (owner TEXT NOT NULL, session TEXT NOT NULL, \
         reserved BIGINT NOT NULL, PRIMARY KEY (owner, session))",
    ],
)];

/// The store's name in messages: a URL's password hidden.
fn shown(url: &str) -> String {
    crate::secrets::redact_url(url).unwrap_or_else(|| url.to_string())
}

impl Store {
    /// Opens the store of `settings`, creating an SQLite file (and its folder) when
    /// missing, and applies the migrations it lacks. Every failure names the store and
    /// says what to do.
    pub async fn open(settings: &StoreSettings) -> Result<Store, String> {
        sqlx::any::install_default_drivers();
        let url = settings.url.trim();
        let (engine, connect, file) = if url == "memory" {
            (Engine::Memory, "sqlite::memory:".to_string(), None)
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err(format!(
                    "store.url {url:?}: give a file, e.g. sqlite://data/synopticon.db"
                ));
            }
            (
                Engine::Sqlite,
                format!("sqlite://{path}?mode=rwc"),
                Some(PathBuf::from(path)),
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Engine::Postgres, url.to_string(), None)
        } else {
            return Err(format!(
                "store.url {:?}: must be sqlite://PATH, postgres://user:pass@host:port/db or memory",
                shown(url)
            ));
        };
        let shown_name = match &file {
            Some(path) => path.display().to_string(),
            None => shown(url),
        };
        if let Some(path) = &file {
            prepare_file(path)?;
        }
        let key = load_key(settings, engine, file.as_deref())?;
        let options = AnyConnectOptions::from_str(&connect)
            .map_err(|e| format!("store.url {:?}: {e}", shown(url)))?;
        if engine != Engine::Memory {
            // One connection first, for the real reason when it fails (a pool only says
            // that it timed out).
            let mut probe = options
                .connect()
                .await
                .map_err(|e| open_error(&shown_name, engine, &e.to_string()))?;
            if engine == Engine::Sqlite {
                probe
                    .execute("PRAGMA journal_mode = WAL")
                    .await
                    .map_err(|e| open_error(&shown_name, engine, &e.to_string()))?;
            }
            let _ = sqlx::Connection::close(probe).await;
        }
        let pool = AnyPoolOptions::new()
            // One SQLite connection: writes are serialized anyway, and an in-memory
            // database lives only as long as its one connection.
            .max_connections(if engine == Engine::Postgres {
                POOL_SIZE
            } else {
                1
            })
            .min_connections(if engine == Engine::Memory { 1 } else { 0 })
            .idle_timeout((engine != Engine::Memory).then_some(Duration::from_secs(300)))
            .max_lifetime((engine != Engine::Memory).then_some(Duration::from_secs(1800)))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine != Engine::Postgres {
                        // WAL for reads beside the writer; FULL so that a write is on
                        // disk before its REST call answers.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 3000").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| open_error(&shown_name, engine, &e.to_string()))?;
        let store = Store {
            pool,
            engine,
            shown: shown_name,
            sealer: Sealer::new(&key),
            instance: settings.instance.clone(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// A store in memory (tests, tools).
    pub async fn memory() -> Result<Store, String> {
        Store::open(&StoreSettings {
            url: "memory".into(),
            secret_key: String::new(),
            key_file: String::new(),
            instance: "main".into(),
        })
        .await
    }

    /// Which engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The store as named in messages.
    pub fn name(&self) -> &str {
        &self.shown
    }

    async fn migrate(&self) -> Result<(), String> {
        let fail = |what: &str, e: sqlx::Error| {
            format!(
                "the store {} cannot be migrated ({what}: {e}); restore a backup (synopticon restore) or point store.url at another store",
                self.shown
            )
        };
        self.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS synopticon_migrations (version BIGINT PRIMARY KEY, \
                 name TEXT NOT NULL, applied_at TEXT NOT NULL)",
            )
            .await
            .map_err(|e| open_error(&self.shown, self.engine, &e.to_string()))?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM synopticon_migrations")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| fail("reading the applied migrations", e))?
            .iter()
            .map(|r| r.try_get::<i64, _>(0).unwrap_or(-1))
            .collect();
        let newest = MIGRATIONS.last().map_or(0, |m| m.0);
        if let Some(ahead) = applied.iter().find(|v| **v > newest) {
            return Err(format!(
                "the store {} was written by a newer Synopticon (migration {ahead}; this one knows up to {newest}): run that version, or restore a backup made for this one",
                self.shown
            ));
        }
        for (version, name, statements) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(|e| fail(&format!("migration {version}"), e))?;
            for statement in *statements {
                tx.execute(*statement)
                    .await
                    .map_err(|e| fail(&format!("migration {version} ({name})"), e))?;
            }
            sqlx::query(
                "INSERT INTO synopticon_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(*version)
            .bind(*name)
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(|e| fail(&format!("migration {version}"), e))?;
            tx.commit()
                .await
                .map_err(|e| fail(&format!("migration {version}"), e))?;
            tracing::info!(store = %self.shown, version, name, "store migrated");
        }
        Ok(())
    }

    fn unavailable(&self, e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            _ => StoreError::Unavailable {
                store: self.shown.clone(),
                cause: e.to_string(),
            },
        }
    }

    fn owner(&self, kind: Kind) -> &str {
        if kind.owned() {
            &self.instance
        } else {
            ""
        }
    }

    /// Keeps `body` as record `id` of `kind`, replacing any; its secrets are sealed. On
    /// disk (or committed by the server) when this returns.
    pub async fn put(&self, kind: Kind, id: &str, body: &Value) -> Result<(), StoreError> {
        let mut sealed = body.clone();
        self.sealer.seal(&mut sealed);
        sqlx::query(
            "INSERT INTO records (kind, owner, id, body, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kind, owner, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(kind.as_str())
        .bind(self.owner(kind))
        .bind(id)
        .bind(sealed.to_string())
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    /// Forgets record `id` of `kind`; whether there was one.
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM records WHERE kind = $1 AND owner = $2 AND id = $3")
            .bind(kind.as_str())
            .bind(self.owner(kind))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.unavailable(e))?;
        if kind == Kind::Session {
            sqlx::query("DELETE FROM sequences WHERE owner = $1 AND session = $2")
                .bind(&self.instance)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(|e| self.unavailable(e))?;
        }
        Ok(done.rows_affected() > 0)
    }

    /// Every record of `kind` (this instance's, for owned kinds), by id, secrets opened.
    pub async fn list(&self, kind: Kind) -> Result<Vec<(String, Value)>, StoreError> {
        let rows =
            sqlx::query("SELECT id, body FROM records WHERE kind = $1 AND owner = $2 ORDER BY id")
                .bind(kind.as_str())
                .bind(self.owner(kind))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.unavailable(e))?;
        rows.iter()
            .map(|row| {
                let id: String = row
                    .try_get(0)
                    .map_err(|e| StoreError::Damaged(e.to_string()))?;
                let body: String = row
                    .try_get(1)
                    .map_err(|e| StoreError::Damaged(e.to_string()))?;
                Ok((
                    id.clone(),
                    self.open_body(&format!("{} {id}", kind.as_str()), &body)?,
                ))
            })
            .collect()
    }

    /// One record of `kind`.
    pub async fn get(&self, kind: Kind, id: &str) -> Result<Option<Value>, StoreError> {
        let row =
            sqlx::query("SELECT body FROM records WHERE kind = $1 AND owner = $2 AND id = $3")
                .bind(kind.as_str())
                .bind(self.owner(kind))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.unavailable(e))?;
        let Some(row) = row else { return Ok(None) };
        let body: String = row
            .try_get(0)
            .map_err(|e| StoreError::Damaged(e.to_string()))?;
        self.open_body(&format!("{} {id}", kind.as_str()), &body)
            .map(Some)
    }

    fn open_body(&self, what: &str, body: &str) -> Result<Value, StoreError> {
        let mut value: Value =
            serde_json::from_str(body).map_err(|e| StoreError::Damaged(format!("{what}: {e}")))?;
        self.sealer
            .open(&mut value)
            .map_err(|e| StoreError::Damaged(format!("{what}: {e}")))?;
        Ok(value)
    }

    /// Records that `session` may use sequence numbers up to `reserved`: after a restart
    /// (a SIGKILL included) it continues above.
    pub async fn reserve_seq(&self, session: &str, reserved: u64) -> Result<(), StoreError> {
        let reserved = i64::try_from(reserved).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO sequences (owner, session, reserved) VALUES ($1, $2, $3) \
             ON CONFLICT (owner, session) DO UPDATE SET reserved = excluded.reserved",
        )
        .bind(&self.instance)
        .bind(session)
        .bind(reserved)
        .execute(&self.pool)
        .await
        .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    /// How far each of this instance's sessions reserved its sequence numbers.
    pub async fn reserved_seqs(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query("SELECT session, reserved FROM sequences WHERE owner = $1")
            .bind(&self.instance)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let session: String = r.try_get(0).ok()?;
                let reserved: i64 = r.try_get(1).ok()?;
                Some((session, u64::try_from(reserved).unwrap_or(0)))
            })
            .collect())
    }

    /// Adds a device record (`id`, `serial` unique); 409 when either is taken.
    pub async fn insert_device(
        &self,
        id: &str,
        serial: &str,
        body: &Value,
    ) -> Result<(), StoreError> {
        let mut sealed = body.clone();
        self.sealer.seal(&mut sealed);
        sqlx::query("INSERT INTO devices (id, serial, body, updated_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(serial)
            .bind(sealed.to_string())
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(|e| match self.unavailable(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "a device with id {id:?} or serial {serial:?} exists"
                )),
                other => other,
            })?;
        Ok(())
    }

    /// Replaces device `id` (its serial may change, and must stay unique), only if it is
    /// still as it was read (`stamp`, from [`device_stamped`](Self::device_stamped)): a
    /// change made meanwhile, by this server or another sharing the database, is never
    /// overwritten. Whether it was written.
    pub async fn update_device(
        &self,
        id: &str,
        serial: &str,
        body: &Value,
        stamp: &str,
    ) -> Result<bool, StoreError> {
        let mut sealed = body.clone();
        self.sealer.seal(&mut sealed);
        let done = sqlx::query(
            "UPDATE devices SET serial = $1, body = $2, updated_at = $3 WHERE id = $4 AND updated_at = $5",
        )
        .bind(serial)
        .bind(sealed.to_string())
        .bind(now())
        .bind(id)
        .bind(stamp)
        .execute(&self.pool)
        .await
        .map_err(|e| match self.unavailable(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("serial {serial:?} belongs to another device"))
            }
            other => other,
        })?;
        Ok(done.rows_affected() > 0)
    }

    /// Forgets device `id`; whether there was one.
    pub async fn delete_device(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM devices WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(done.rows_affected() > 0)
    }

    /// Device `id`, or the device with serial `serial`.
    pub async fn device(&self, key: DeviceKey<'_>) -> Result<Option<Value>, StoreError> {
        Ok(self.device_stamped(key).await?.map(|(device, _)| device))
    }

    /// The same, with the time of its last write (the `stamp` an update checks).
    pub async fn device_stamped(
        &self,
        key: DeviceKey<'_>,
    ) -> Result<Option<(Value, String)>, StoreError> {
        let (sql, value) = match key {
            DeviceKey::Id(id) => ("SELECT id, body, updated_at FROM devices WHERE id = $1", id),
            DeviceKey::Serial(serial) => (
                "SELECT id, body, updated_at FROM devices WHERE serial = $1",
                serial,
            ),
        };
        let row = sqlx::query(sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.unavailable(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let text = |i: usize| -> Result<String, StoreError> {
            row.try_get(i)
                .map_err(|e| StoreError::Damaged(e.to_string()))
        };
        let (id, body, stamp) = (text(0)?, text(1)?, text(2)?);
        let device = self.open_body(&format!("device {id}"), &body)?;
        Ok(Some((device, stamp)))
    }

    /// How many devices are registered.
    pub async fn device_count(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM devices")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.unavailable(e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Every device record that can be read, by id. A damaged one (or one sealed with
    /// another key) is logged and left out: one bad row must not hide the others, nor
    /// stop a start.
    pub async fn devices(&self) -> Result<Vec<Value>, StoreError> {
        let rows = sqlx::query("SELECT id, body FROM devices ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.unavailable(e))?;
        let mut devices = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get(0).unwrap_or_default();
            let opened = row
                .try_get::<String, _>(1)
                .map_err(|e| StoreError::Damaged(e.to_string()))
                .and_then(|body| self.open_body(&format!("device {id}"), &body));
            match opened {
                Ok(device) => devices.push(device),
                Err(error) => {
                    tracing::error!(store = %self.shown, device = %id, %error, "a device record cannot be read; it is left out")
                }
            }
        }
        Ok(devices)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    /// A consistent copy of everything (every instance's records), as JSON, secrets still
    /// sealed: read in one transaction.
    pub async fn export(&self) -> Result<Value, StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.unavailable(e))?;
        let records = sqlx::query(
            "SELECT kind, owner, id, body, updated_at FROM records ORDER BY kind, owner, id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.unavailable(e))?;
        let devices = sqlx::query("SELECT id, serial, body, updated_at FROM devices ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.unavailable(e))?;
        let sequences =
            sqlx::query("SELECT owner, session, reserved FROM sequences ORDER BY owner, session")
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.unavailable(e))?;
        tx.commit().await.map_err(|e| self.unavailable(e))?;
        let text =
            |row: &sqlx::any::AnyRow, i: usize| row.try_get::<String, _>(i).unwrap_or_default();
        Ok(json!({
            "format": "synopticon-store",
            "version": MIGRATIONS.last().map_or(0, |m| m.0),
            "exported_at": now(),
            "records": records.iter().map(|r| json!({"kind": text(r, 0), "owner": text(r, 1),
                "id": text(r, 2), "body": text(r, 3), "updated_at": text(r, 4)})).collect::<Vec<_>>(),
            "devices": devices.iter().map(|r| json!({"id": text(r, 0), "serial": text(r, 1),
                "body": text(r, 2), "updated_at": text(r, 3)})).collect::<Vec<_>>(),
            "sequences": sequences.iter().map(|r| json!({"owner": text(r, 0), "session": text(r, 1),
                "reserved": r.try_get::<i64, _>(2).unwrap_or_default()})).collect::<Vec<_>>(),
        }))
    }

    /// Loads an [`export`](Self::export) into this store, which must be empty.
    pub async fn import(&self, dump: &Value) -> Result<usize, String> {
        if dump["format"] != "synopticon-store" {
            return Err(
                "not a Synopticon store backup (no \"format\": \"synopticon-store\")".into(),
            );
        }
        let occupied: i64 =
            sqlx::query("SELECT (SELECT COUNT(*) FROM records) + (SELECT COUNT(*) FROM devices)")
                .fetch_one(&self.pool)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(|e| format!("{}: {e}", self.shown))?;
        if occupied > 0 {
            return Err(format!(
                "the store {} is not empty: restore into a new one (a new file, an empty database)",
                self.shown
            ));
        }
        let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        // The secrets in the backup are sealed: a store with another key could not open
        // them, and would find out only when a session needs its password.
        let bodies = dump["records"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(dump["devices"].as_array().into_iter().flatten());
        for r in bodies {
            let mut body: Value = serde_json::from_str(&s(r, "body"))
                .map_err(|e| format!("the backup's record {:?} is damaged: {e}", s(r, "id")))?;
            if self.sealer.open(&mut body).is_err() {
                return Err("the backup's secrets were sealed with another key: give store.secret_key (or store.key_file) the key of the server it was taken from".into());
            }
        }
        let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
        let mut count = 0;
        for r in dump["records"].as_array().into_iter().flatten() {
            sqlx::query("INSERT INTO records (kind, owner, id, body, updated_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(s(r, "kind"))
                .bind(s(r, "owner"))
                .bind(s(r, "id"))
                .bind(s(r, "body"))
                .bind(s(r, "updated_at"))
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
            count += 1;
        }
        for d in dump["devices"].as_array().into_iter().flatten() {
            sqlx::query(
                "INSERT INTO devices (id, serial, body, updated_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(s(d, "id"))
            .bind(s(d, "serial"))
            .bind(s(d, "body"))
            .bind(s(d, "updated_at"))
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
            count += 1;
        }
        for q in dump["sequences"].as_array().into_iter().flatten() {
            sqlx::query("INSERT INTO sequences (owner, session, reserved) VALUES ($1, $2, $3)")
                .bind(s(q, "owner"))
                .bind(s(q, "session"))
                .bind(q["reserved"].as_i64().unwrap_or_default())
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(count)
    }

    /// Every kind of document record, for tools.
    pub fn kinds() -> [Kind; 9] {
        Kind::ALL
    }
}

/// The time of a write, as text (RFC 3339, the same in every engine), in microseconds:
/// a device's write time is also the stamp an update checks.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// An SQLite file's folder is made; a file that exists must be readable and writable.
fn prepare_file(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create the folder of the store {}: {e}; create it, or point store.url elsewhere",
                path.display()
            )
        })?;
    }
    if path.exists() {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                format!(
                    "cannot open the store {}: {e}; give this user read and write access to it, or point store.url elsewhere",
                    path.display()
                )
            })?;
    }
    Ok(())
}

fn open_error(store: &str, engine: Engine, cause: &str) -> String {
    match engine {
        Engine::Sqlite if cause.contains("not a database") || cause.contains("malformed") => format!(
            "the store {store} is not a readable SQLite database ({cause}): move it aside and restore a backup (synopticon restore FILE), or point store.url elsewhere"
        ),
        Engine::Postgres => format!(
            "cannot reach the store {store} ({cause}): start PostgreSQL, check store.url, or use sqlite://"
        ),
        _ => format!("cannot open the store {store}: {cause}"),
    }
}

/// The sealing key: `store.secret_key`, else the key file (made, mode 0600, when missing).
fn load_key(
    settings: &StoreSettings,
    engine: Engine,
    file: Option<&Path>,
) -> Result<[u8; KEY_LEN], String> {
    if !settings.secret_key.is_empty() {
        return Sealer::parse_key(&settings.secret_key)
            .map_err(|e| format!("store.secret_key: {e}; make one with `synopticon key new`"));
    }
    if engine == Engine::Memory {
        let key = Sealer::generate_key()?;
        return Sealer::parse_key(&key);
    }
    let path = if !settings.key_file.is_empty() {
        PathBuf::from(&settings.key_file)
    } else {
        match file
            .and_then(Path::parent)
            .filter(|d| !d.as_os_str().is_empty())
        {
            Some(dir) => dir.join("secret.key"),
            None => PathBuf::from("data/secret.key"),
        }
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Sealer::parse_key(&text).map_err(|e| {
            format!(
                "the key file {} is damaged ({e}): restore it, or give store.secret_key",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Sealer::generate_key()?;
            write_private(&path, &key).map_err(|e| {
                format!(
                    "cannot write the key file {}: {e}; give store.secret_key or a writable store.key_file",
                    path.display()
                )
            })?;
            tracing::info!(key_file = %path.display(), "made a key for the secrets in the store");
            Sealer::parse_key(&key)
        }
        Err(e) => Err(format!(
            "cannot read the key file {}: {e}; give this user access to it, or give store.secret_key",
            path.display()
        )),
    }
}

/// Writes `text` to a new file only this user may read (an existing file is an error).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_round_trip_with_their_secrets_sealed_on_disk() {
        let dir = std::env::temp_dir().join(format!("synopticon-store-{}", uuid::Uuid::new_v4()));
        let settings = StoreSettings {
            url: format!("sqlite://{}/s.db", dir.display()),
            secret_key: String::new(),
            key_file: String::new(),
            instance: "main".into(),
        };
        let store = Store::open(&settings).await.unwrap();
        let body = json!({"id": "lab", "distributors": {"mqtt": {"broker": "mqtt://u:hunter2@b", "password": "pw"}}});
        store.put(Kind::Session, "lab", &body).await.unwrap();
        store
            .put(Kind::Template, "t", &json!({"x": 1}))
            .await
            .unwrap();
        store.reserve_seq("lab", 20_000).await.unwrap();
        drop(store);

        let reopened = Store::open(&settings).await.unwrap();
        assert_eq!(
            reopened.list(Kind::Session).await.unwrap(),
            vec![("lab".to_string(), body)]
        );
        assert_eq!(
            reopened.reserved_seqs().await.unwrap(),
            vec![("lab".to_string(), 20_000)]
        );
        let on_disk = std::fs::read(dir.join("s.db")).unwrap();
        let text = String::from_utf8_lossy(&on_disk);
        assert!(
            !text.contains("hunter2") && !text.contains("\"pw\""),
            "a secret reached the file"
        );
        assert!(dir.join("secret.key").exists());
        assert!(reopened.delete(Kind::Session, "lab").await.unwrap());
        assert!(reopened.list(Kind::Session).await.unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_stops_the_opening_with_the_fix() {
        let dir = std::env::temp_dir().join(format!("synopticon-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s.db"), vec![0x42u8; 8192]).unwrap();
        let settings = StoreSettings {
            url: format!("sqlite://{}/s.db", dir.display()),
            secret_key: String::new(),
            key_file: String::new(),
            instance: "main".into(),
        };
        let error = Store::open(&settings).await.unwrap_err();
        assert!(
            error.contains("s.db") && error.contains("restore a backup"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn devices_keep_serials_unique_and_exports_load_into_an_empty_store() {
        let store = Store::memory().await.unwrap();
        store
            .insert_device("d1", "SN1", &json!({"id": "d1"}))
            .await
            .unwrap();
        let taken = store
            .insert_device("d2", "SN1", &json!({"id": "d2"}))
            .await
            .unwrap_err();
        assert!(matches!(taken, StoreError::Conflict(_)), "{taken:?}");
        store
            .put(Kind::Token, "t", &json!({"sha256": "ab"}))
            .await
            .unwrap();
        // An update checks the record is still as it was read.
        let (_, stamp) = store
            .device_stamped(DeviceKey::Id("d1"))
            .await
            .unwrap()
            .unwrap();
        assert!(store
            .update_device("d1", "SN1", &json!({"id": "d1", "v": 2}), &stamp)
            .await
            .unwrap());
        assert!(
            !store
                .update_device("d1", "SN1", &json!({"id": "d1", "v": 3}), &stamp)
                .await
                .unwrap(),
            "a stale stamp changes nothing"
        );
        assert_eq!(
            store.device(DeviceKey::Serial("SN1")).await.unwrap(),
            Some(json!({"id": "d1", "v": 2}))
        );
        store
            .update_device("d1", "SN1", &json!({"id": "d1"}), &{
                store
                    .device_stamped(DeviceKey::Id("d1"))
                    .await
                    .unwrap()
                    .unwrap()
                    .1
            })
            .await
            .unwrap();
        let dump = store.export().await.unwrap();
        let copy = Store::memory().await.unwrap();
        assert_eq!(copy.import(&dump).await, Ok(2));
        assert_eq!(copy.devices().await.unwrap(), vec![json!({"id": "d1"})]);
        assert_eq!(copy.list(Kind::Token).await.unwrap()[0].0, "t");
        assert!(copy.import(&dump).await.unwrap_err().contains("not empty"));
        assert!(copy
            .import(&json!({}))
            .await
            .unwrap_err()
            .contains("not a Synopticon store backup"));
    }
}
