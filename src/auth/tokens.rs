//! The token store: tokens from the configuration and tokens an admin creates over REST.
//!
//! Only the SHA-256 of a token is kept, in memory and in `auth.tokens_file`; the secret
//! itself is shown once, when it is created. A token is 32 random bytes (256 bits), so a
//! fast hash is enough: nobody can guess one to test against the hash. A presented token
//! is hashed and compared with every stored hash in constant time.
//!
//! Live connections are registered under the token that opened them, so deleting a token,
//! or changing what it may see, closes them at once.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use synopticon_actors::distributor::live::ClientQueue;
use synopticon_actors::distributor::CloseReason;
use synopticon_actors::glob::{is_valid_pattern, PATTERN_RULE};
use synopticon_actors::session::redaction::to_hex;
use synopticon_actors::validation::{kind_of, Report};

use super::{Principal, Role, TokenScope};

/// What every token starts with, so a leaked one is easy to recognise (and to search for).
pub const TOKEN_PREFIX: &str = "syn_";
/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;
/// Longest token id.
const MAX_ID_LEN: usize = 64;
/// Most globs in one scope list.
const MAX_SCOPE_ENTRIES: usize = 64;

/// A token declared in the configuration (`[[auth.tokens]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Id shown in logs and audit lines (never the secret).
    pub id: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Hex SHA-256 of the token (`synopticon token new` prints a token and this).
    pub sha256: String,
    /// Session ids (globs) it may see (absent: all).
    #[serde(default)]
    pub sessions: Option<Vec<String>>,
    /// Source ids (globs) it may see (absent: all).
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// Events and channels (globs) its live feeds may receive (absent: all).
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Device serials (globs) it may see (absent: all).
    #[serde(default)]
    pub devices: Option<Vec<String>>,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

impl TokenConfig {
    /// Its scope.
    pub fn scope(&self) -> TokenScope {
        TokenScope {
            sessions: self.sessions.clone(),
            sources: self.sources.clone(),
            events: self.events.clone(),
            devices: self.devices.clone(),
        }
    }
}

/// Checks configured tokens; every problem at once.
pub fn validate_configured(tokens: &[TokenConfig], r: &mut Report) {
    let mut ids = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let at = format!("auth.tokens[{i}]");
        if let Err(e) = check_id(&t.id) {
            r.error(format!("{at}.id: {e}"));
        } else if RESERVED_IDS.contains(&t.id.as_str()) {
            r.error(format!(
                "{at}.id: {:?} is reserved for callers without a token",
                t.id
            ));
        }
        if ids.contains(&&t.id) {
            r.error(format!("{at}.id: {:?} is declared twice", t.id));
        }
        ids.push(&t.id);
        if Role::parse(&t.role).is_none() {
            r.error(format!(
                "{at}.role: {:?} is not admin, operator or viewer",
                t.role
            ));
        }
        if parse_digest(&t.sha256).is_none() {
            r.error(format!(
                "{at}.sha256: must be 64 hex digits (the SHA-256 of the token; `synopticon token new` prints one)"
            ));
        }
        check_scope(&at, &t.scope(), r);
    }
}

fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} must be 1-{MAX_ID_LEN} letters, digits, _ - or ."
        ))
    }
}

fn check_scope(at: &str, scope: &TokenScope, r: &mut Report) {
    for (kind, list) in [
        ("sessions", &scope.sessions),
        ("sources", &scope.sources),
        ("events", &scope.events),
        ("devices", &scope.devices),
    ] {
        let Some(list) = list else { continue };
        if list.len() > MAX_SCOPE_ENTRIES {
            r.error(format!("{at}.{kind}: at most {MAX_SCOPE_ENTRIES} entries"));
        }
        for (j, g) in list.iter().enumerate() {
            if !is_valid_pattern(g) {
                r.error(format!("{at}.{kind}[{j}]: {g:?} must be {PATTERN_RULE}"));
            }
        }
    }
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The SHA-256 of a token, as kept.
pub fn hash_token(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

/// The hex SHA-256 of a token, as `[[auth.tokens]]` takes it.
pub fn hash_hex(token: &str) -> String {
    to_hex(&hash_token(token))
}

/// A new random token.
pub fn generate() -> Result<String, String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system's random number generator failed".to_string())?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `[[auth.tokens]]`: changed by editing the file.
    Config,
    /// `POST /api/v1/tokens`.
    Api,
}

/// A token as stored (and as `tokens_file` holds it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Id.
    pub id: String,
    /// Role.
    pub role: Role,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
    /// What it may see.
    #[serde(default)]
    pub scope: TokenScope,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Where it came from.
    pub origin: Origin,
    /// When it was created (`None` for configured tokens).
    pub created_at: Option<DateTime<Utc>>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Who created it.
    #[serde(default)]
    pub created_by: Option<String>,
}

impl TokenRecord {
    /// The record as the API shows it: everything but the hash.
    pub fn view(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "role": self.role,
            "sessions": self.scope.sessions,
            "sources": self.scope.sources,
            "events": self.scope.events,
            "devices": self.scope.devices,
            "description": self.description,
            "origin": self.origin,
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
            "createdBy": self.created_by,
        })
    }
}

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The request did not validate.
    #[error("invalid token request")]
    Invalid(Report),
    /// No such token.
    #[error("token {0:?} not found")]
    NotFound(String),
    /// The id is taken, or the token is declared in the configuration.
    #[error("{0}")]
    Conflict(String),
    /// The token file could not be written.
    #[error("{0}")]
    Storage(String),
    /// The token would see more than the caller's own scope allows.
    #[error("{0}")]
    Wider(String),
}

fn wider(id: &str) -> TokenError {
    TokenError::Wider(format!(
        "token {id:?} would see more than the caller's own scope: a token may only create \
         or change tokens within its own sessions, sources, events and devices"
    ))
}

/// What `POST /api/v1/tokens` and `PATCH /api/v1/tokens/{id}` may say.
#[derive(Debug, Default)]
pub struct TokenRequest {
    id: Option<String>,
    role: Option<Role>,
    sessions: Option<Option<Vec<String>>>,
    sources: Option<Option<Vec<String>>>,
    events: Option<Option<Vec<String>>>,
    devices: Option<Option<Vec<String>>>,
    description: Option<String>,
    expires_in_secs: Option<u64>,
}

/// Longest lifetime a token may be given over REST: ten years.
const MAX_EXPIRY_SECS: u64 = 10 * 365 * 24 * 3600;

impl TokenRequest {
    /// Reads a JSON body; every problem at once. `patch` refuses `id`.
    pub fn parse(body: &Value, patch: bool) -> Result<TokenRequest, Report> {
        let mut r = Report::default();
        let mut out = TokenRequest::default();
        let Value::Object(map) = body else {
            r.error(format!(
                "the body must be a JSON object, got {}",
                kind_of(body)
            ));
            return Err(r);
        };
        let list = |key: &str, v: &Value, r: &mut Report| -> Option<Option<Vec<String>>> {
            match v {
                Value::Null => Some(None),
                Value::Array(items) => {
                    let strings: Option<Vec<String>> =
                        items.iter().map(|i| i.as_str().map(String::from)).collect();
                    match strings {
                        Some(s) => Some(Some(s)),
                        None => {
                            r.error(format!("{key}: must be a list of strings (globs)"));
                            None
                        }
                    }
                }
                other => {
                    r.error(format!(
                        "{key}: must be a list of strings or null, got {}",
                        kind_of(other)
                    ));
                    None
                }
            }
        };
        for (key, v) in map {
            match key.as_str() {
                "id" if !patch => match v.as_str() {
                    Some(s) => match check_id(s) {
                        Ok(()) => out.id = Some(s.to_string()),
                        Err(e) => r.error(format!("id: {e}")),
                    },
                    None => r.error(format!("id: must be a string, got {}", kind_of(v))),
                },
                "role" => match v.as_str().and_then(Role::parse) {
                    Some(role) => out.role = Some(role),
                    None => r.error(format!("role: {v} is not admin, operator or viewer")),
                },
                "sessions" => out.sessions = list("sessions", v, &mut r),
                "sources" => out.sources = list("sources", v, &mut r),
                "events" => out.events = list("events", v, &mut r),
                "devices" => out.devices = list("devices", v, &mut r),
                "description" => match v.as_str() {
                    Some(s) if s.len() <= 256 => out.description = Some(s.to_string()),
                    _ => r.error("description: must be a string of at most 256 bytes"),
                },
                "expiresInSecs" if !patch => match v.as_u64() {
                    Some(s) if (1..=MAX_EXPIRY_SECS).contains(&s) => out.expires_in_secs = Some(s),
                    _ => r.error(format!(
                        "expiresInSecs: must be a whole number of seconds from 1 to {MAX_EXPIRY_SECS}"
                    )),
                },
                other => r.error(format!(
                    "{other}: unknown field (known: {})",
                    if patch {
                        "role, sessions, sources, events, devices, description"
                    } else {
                        "id, role, sessions, sources, events, devices, description, expiresInSecs"
                    }
                )),
            }
        }
        if !patch && !map.contains_key("role") {
            r.error("role: required (admin, operator or viewer)");
        }
        let scope = TokenScope {
            sessions: out.sessions.clone().flatten(),
            sources: out.sources.clone().flatten(),
            events: out.events.clone().flatten(),
            devices: out.devices.clone().flatten(),
        };
        check_scope("", &scope, &mut r);
        for e in r.errors.iter_mut() {
            if let Some(rest) = e.strip_prefix('.') {
                *e = rest.to_string();
            }
        }
        if r.is_valid() {
            Ok(out)
        } else {
            Err(r)
        }
    }
}

/// Live connections of one token, or from one address.
#[derive(Debug, Default)]
struct Live {
    queues: Vec<Weak<ClientQueue>>,
}

impl Live {
    fn prune(&mut self) -> usize {
        self.queues
            .retain(|q| q.upgrade().is_some_and(|q| !q.is_closed()));
        self.queues.len()
    }
}

/// The live connections held, by token and by client address.
#[derive(Debug, Default)]
struct LiveBook {
    by_token: HashMap<String, Live>,
    by_address: HashMap<String, Live>,
}

/// How many live connections may be held.
#[derive(Debug, Clone, Copy)]
pub struct LiveLimits {
    /// In the whole server.
    pub total: usize,
    /// Under one token.
    pub per_token: usize,
    /// From one client address, whatever its tokens (admins aside).
    pub per_address: usize,
}

/// Why a live connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LiveLimit {
    /// The token was deleted or changed while the connection was being set up.
    Revoked,
    /// The server holds `live.max_connections`.
    Total(usize),
    /// The token holds `live.max_connections_per_token`.
    PerToken(usize),
    /// The client address holds `live.max_connections_per_address`.
    PerAddress(usize),
}

/// A stored token with its parsed hash and its generation.
#[derive(Debug, Clone)]
struct Entry {
    record: TokenRecord,
    digest: [u8; 32],
    /// Bumped at every change, so a connection checked against an older version is refused.
    generation: u64,
}

/// Every token the server knows.
pub struct TokenStore {
    /// Records and hashes in one list under one lock: a match and its record never part.
    tokens: RwLock<Vec<Entry>>,
    live: Mutex<LiveBook>,
    next_generation: std::sync::atomic::AtomicU64,
}

/// Token ids the server uses for callers without a token.
const RESERVED_IDS: &[&str] = &["local", "anonymous"];

impl TokenStore {
    /// The configured tokens plus those kept in the store (`kept`: made over REST). A kept
    /// token with the id of a configured one gives way to it.
    pub fn load(configured: &[TokenConfig], kept: Vec<TokenRecord>) -> Result<TokenStore, String> {
        let mut tokens: Vec<TokenRecord> = configured
            .iter()
            .filter_map(|t| {
                Some(TokenRecord {
                    id: t.id.clone(),
                    role: Role::parse(&t.role)?,
                    sha256: t.sha256.trim().to_ascii_lowercase(),
                    scope: t.scope(),
                    description: t.description.clone(),
                    origin: Origin::Config,
                    created_at: None,
                    expires_at: None,
                    created_by: None,
                })
            })
            .collect();
        for t in kept {
            if tokens.iter().any(|c| c.id == t.id) {
                tracing::warn!(token = %t.id, "a kept token has the id of a configured one; the configured one wins");
                continue;
            }
            tokens.push(TokenRecord {
                origin: Origin::Api,
                ..t
            });
        }
        let mut entries = Vec::with_capacity(tokens.len());
        for record in tokens {
            let digest = parse_digest(&record.sha256)
                .ok_or_else(|| format!("token {:?} has no valid sha256", record.id))?;
            entries.push(Entry {
                record,
                digest,
                generation: 0,
            });
        }
        Ok(TokenStore {
            tokens: RwLock::new(entries),
            live: Mutex::new(LiveBook::default()),
            next_generation: std::sync::atomic::AtomicU64::new(1),
        })
    }

    fn generation(&self) -> u64 {
        self.next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// The principal a presented token stands for. Every stored hash is compared, each in
    /// constant time, so the answer's timing says nothing about which hash came close.
    pub fn authenticate(&self, presented: &str) -> Result<Principal, &'static str> {
        let wanted = hash_token(presented.trim());
        let tokens = self.tokens.read();
        let mut found: Option<&Entry> = None;
        for entry in tokens.iter() {
            if bool::from(entry.digest.ct_eq(&wanted)) {
                found = Some(entry);
            }
        }
        let entry = found.ok_or("invalid")?;
        let t = &entry.record;
        if t.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err("expired");
        }
        Ok(Principal {
            token_id: Arc::from(t.id.as_str()),
            role: t.role,
            scope: Arc::new(t.scope.clone()),
            authenticated: true,
            generation: entry.generation,
        })
    }

    /// Every token (without hashes), in creation order.
    pub fn list(&self) -> Vec<TokenRecord> {
        self.tokens
            .read()
            .iter()
            .map(|e| e.record.clone())
            .collect()
    }

    /// One token.
    pub fn get(&self, id: &str) -> Result<TokenRecord, TokenError> {
        self.tokens
            .read()
            .iter()
            .find(|e| e.record.id == id)
            .map(|e| e.record.clone())
            .ok_or_else(|| TokenError::NotFound(id.to_string()))
    }

    /// Creates a token for `request`; returns it with its secret, which is never shown again.
    pub fn create(
        &self,
        request: TokenRequest,
        created_by: &str,
        within: &TokenScope,
    ) -> Result<(TokenRecord, String), TokenError> {
        let secret = generate().map_err(TokenError::Storage)?;
        let now = Utc::now();
        let id = match request.id {
            Some(id) => id,
            None => format!("tok-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        };
        if RESERVED_IDS.contains(&id.as_str()) {
            let mut r = Report::default();
            r.error(format!(
                "id: {id:?} is reserved for callers without a token"
            ));
            return Err(TokenError::Invalid(r));
        }
        let record = TokenRecord {
            role: request.role.unwrap_or(Role::Viewer),
            sha256: hash_hex(&secret),
            scope: TokenScope {
                sessions: request.sessions.flatten(),
                sources: request.sources.flatten(),
                events: request.events.flatten(),
                devices: request.devices.flatten(),
            },
            description: request.description.unwrap_or_default(),
            origin: Origin::Api,
            created_at: Some(now),
            expires_at: request
                .expires_in_secs
                .and_then(|s| chrono::Duration::try_seconds(s as i64))
                .map(|d| now + d),
            created_by: Some(created_by.to_string()),
            id,
        };
        if !within.contains(&record.scope) {
            return Err(wider(&record.id));
        }
        {
            let mut tokens = self.tokens.write();
            if tokens.iter().any(|e| e.record.id == record.id) {
                return Err(TokenError::Conflict(format!(
                    "token {:?} already exists",
                    record.id
                )));
            }
            tokens.push(Entry {
                digest: hash_token(&secret),
                generation: self.generation(),
                record: record.clone(),
            });
        }
        Ok((record, secret))
    }

    /// Changes a REST token's role, scope or description; its live connections close.
    pub fn update(
        &self,
        id: &str,
        request: TokenRequest,
        within: &TokenScope,
    ) -> Result<TokenRecord, TokenError> {
        let updated = {
            let mut tokens = self.tokens.write();
            let entry = tokens
                .iter_mut()
                .find(|e| e.record.id == id && within.contains(&e.record.scope))
                .ok_or_else(|| TokenError::NotFound(id.to_string()))?;
            let mut scope = entry.record.scope.clone();
            if let Some(s) = &request.sessions {
                scope.sessions = s.clone();
            }
            if let Some(s) = &request.sources {
                scope.sources = s.clone();
            }
            if let Some(s) = &request.events {
                scope.events = s.clone();
            }
            if let Some(s) = &request.devices {
                scope.devices = s.clone();
            }
            if !within.contains(&scope) {
                return Err(wider(id));
            }
            let t = &mut entry.record;
            if t.origin == Origin::Config {
                return Err(TokenError::Conflict(format!(
                    "token {id:?} is declared in the configuration file; change it there"
                )));
            }
            if let Some(role) = request.role {
                t.role = role;
            }
            t.scope = scope;
            if let Some(d) = request.description {
                t.description = d;
            }
            entry.generation = self.generation();
            entry.record.clone()
        };
        self.disconnect(id);
        Ok(updated)
    }

    /// Deletes a REST token within `within`; its live connections close.
    pub fn delete(&self, id: &str, within: &TokenScope) -> Result<(), TokenError> {
        {
            let mut tokens = self.tokens.write();
            let i = tokens
                .iter()
                .position(|e| e.record.id == id && within.contains(&e.record.scope))
                .ok_or_else(|| TokenError::NotFound(id.to_string()))?;
            if tokens[i].record.origin == Origin::Config {
                return Err(TokenError::Conflict(format!(
                    "token {id:?} is declared in the configuration file; remove it there"
                )));
            }
            tokens.remove(i);
        }
        self.disconnect(id);
        Ok(())
    }

    /// Puts a REST token back as it was (its change could not be kept); with a new
    /// generation, so connections opened under the undone change are refused.
    pub fn restore(&self, record: TokenRecord) {
        let Some(digest) = parse_digest(&record.sha256) else {
            return;
        };
        let mut tokens = self.tokens.write();
        tokens.retain(|e| e.record.id != record.id);
        tokens.push(Entry {
            record,
            digest,
            generation: self.generation(),
        });
    }

    /// Forgets a REST token that could not be kept.
    pub fn forget(&self, id: &str) {
        self.tokens.write().retain(|e| e.record.id != id);
        self.disconnect(id);
    }

    /// The soonest time a token still valid now expires.
    pub fn next_expiry(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.tokens
            .read()
            .iter()
            .filter_map(|e| e.record.expires_at)
            .filter(|at| *at > now)
            .min()
    }

    /// How long the sweeper waits before its next sweep: until the next token expires
    /// (its connections are cut at once, not up to a period later), at most `period`.
    pub fn until_next_sweep(
        &self,
        now: DateTime<Utc>,
        period: std::time::Duration,
    ) -> std::time::Duration {
        self.next_expiry(now)
            .and_then(|at| (at - now).to_std().ok())
            .map_or(period, |left| left.min(period))
    }

    /// Closes the live connections of tokens that have expired; returns how many.
    pub fn sweep_expired(&self) -> usize {
        let now = Utc::now();
        let expired: Vec<String> = self
            .tokens
            .read()
            .iter()
            .filter(|e| e.record.expires_at.is_some_and(|at| at <= now))
            .map(|e| e.record.id.clone())
            .collect();
        expired.iter().map(|id| self.disconnect(id)).sum()
    }

    /// Registers a live connection of `principal`, within the limits. A token deleted or
    /// changed since the principal was checked is refused: the check and the registration
    /// happen under the lock that revocation takes to close connections.
    pub fn register_live(
        &self,
        principal: &Principal,
        address: &str,
        queue: &Arc<ClientQueue>,
        limits: LiveLimits,
    ) -> Result<(), LiveLimit> {
        let mut live = self.live.lock();
        if principal.authenticated {
            let current = self
                .tokens
                .read()
                .iter()
                .find(|e| e.record.id == *principal.token_id)
                .map(|e| e.generation);
            if current != Some(principal.generation) {
                return Err(LiveLimit::Revoked);
            }
        }
        let LiveBook {
            by_token,
            by_address,
        } = &mut *live;
        // Closed connections are pruned lazily: the token's and the address's own lists
        // always, every list only when the count with the stale entries reaches the limit.
        if let Some(mine) = by_token.get_mut(&*principal.token_id) {
            mine.prune();
        }
        let mut total: usize = by_token.values().map(|l| l.queues.len()).sum();
        if total >= limits.total {
            total = by_token.values_mut().map(Live::prune).sum();
            by_token.retain(|_, l| !l.queues.is_empty());
            by_address.retain(|_, l| l.prune() > 0);
        }
        if total >= limits.total {
            return Err(LiveLimit::Total(limits.total));
        }
        // Without authentication every client is "local": only the total applies. An
        // admin is not limited by its address, so others there cannot lock it out.
        let admin = principal.authenticated && principal.role == super::Role::Admin;
        let from_here = by_address.entry(address.to_string()).or_default();
        if principal.authenticated && !admin && from_here.prune() >= limits.per_address {
            return Err(LiveLimit::PerAddress(limits.per_address));
        }
        let mine = by_token.entry(principal.token_id.to_string()).or_default();
        if principal.authenticated && mine.queues.len() >= limits.per_token {
            return Err(LiveLimit::PerToken(limits.per_token));
        }
        mine.queues.push(Arc::downgrade(queue));
        from_here.queues.push(Arc::downgrade(queue));
        Ok(())
    }

    /// Closes every live connection opened with token `id`.
    pub fn disconnect(&self, id: &str) -> usize {
        let Some(live) = self.live.lock().by_token.remove(id) else {
            return 0;
        };
        let mut closed = 0;
        for q in live.queues.iter().filter_map(Weak::upgrade) {
            if !q.is_closed() {
                q.close(CloseReason::TokenRevoked);
                closed += 1;
            }
        }
        if closed > 0 {
            tracing::info!(token = %id, connections = closed, "closed the live connections of a revoked token");
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> TokenStore {
        let configured = vec![TokenConfig {
            id: "ops".into(),
            role: "operator".into(),
            sha256: hash_hex("syn_configured"),
            sessions: None,
            sources: None,
            events: None,
            devices: None,
            description: String::new(),
        }];
        TokenStore::load(&configured, Vec::new()).expect("store")
    }

    #[test]
    fn tokens_authenticate_by_hash_and_only_their_own_secret() {
        let s = store();
        assert_eq!(&*s.authenticate("syn_configured").unwrap().token_id, "ops");
        assert_eq!(s.authenticate("syn_configured!").unwrap_err(), "invalid");
        let body = serde_json::json!({"id": "viewer-1", "role": "viewer", "sessions": ["lab-*"]});
        let (record, secret) = s
            .create(
                TokenRequest::parse(&body, false).unwrap(),
                "admin",
                &TokenScope::default(),
            )
            .unwrap();
        assert!(
            secret.starts_with(TOKEN_PREFIX) && secret.len() == 47,
            "{secret}"
        );
        assert_ne!(record.sha256, secret);
        let p = s.authenticate(&secret).unwrap();
        assert_eq!((&*p.token_id, p.role), ("viewer-1", Role::Viewer));
        assert!(p.scope.allows_session("lab-3") && !p.scope.allows_session("other"));
        s.delete("viewer-1", &TokenScope::default()).unwrap();
        assert!(s.authenticate(&secret).is_err());
        assert!(matches!(
            s.delete("ops", &TokenScope::default()),
            Err(TokenError::Conflict(_))
        ));
    }

    #[test]
    fn the_sweep_wakes_when_the_next_token_expires() {
        let s = store();
        let period = std::time::Duration::from_secs(1);
        let now = Utc::now();
        assert_eq!(s.until_next_sweep(now, period), period, "nothing expires");
        for (id, secs) in [("soon", 2), ("later", 60)] {
            let body = serde_json::json!({"id": id, "role": "viewer", "expiresInSecs": secs});
            s.create(
                TokenRequest::parse(&body, false).unwrap(),
                "admin",
                &TokenScope::default(),
            )
            .unwrap();
        }
        let expiry = s.get("soon").unwrap().expires_at.expect("an expiry");
        // A second and a half before: the period; a quarter before: exactly then.
        let early = expiry - chrono::Duration::milliseconds(1500);
        assert_eq!(s.until_next_sweep(early, period), period);
        let close = expiry - chrono::Duration::milliseconds(250);
        assert_eq!(
            s.until_next_sweep(close, period),
            std::time::Duration::from_millis(250)
        );
        // Once it has expired, the next one counts (no wake-up storm on a past expiry).
        let after = expiry + chrono::Duration::milliseconds(1);
        assert_eq!(s.next_expiry(after), s.get("later").unwrap().expires_at);
        assert_eq!(s.until_next_sweep(after, period), period);
    }

    #[test]
    fn a_connection_set_up_while_its_token_changes_is_refused_or_closed_never_kept() {
        use synopticon_actors::distributor::live::Subscription;
        let s = store();
        let body = serde_json::json!({"id": "kiosk", "role": "viewer"});
        let (_, secret) = s
            .create(
                TokenRequest::parse(&body, false).unwrap(),
                "admin",
                &TokenScope::default(),
            )
            .unwrap();
        let queue = |n| Arc::new(ClientQueue::new(n, 8, Subscription::all()));
        const LIMITS: LiveLimits = LiveLimits {
            total: 10,
            per_token: 10,
            per_address: 10,
        };

        // Checked before a re-scope, registered after it: refused.
        let stale = s.authenticate(&secret).unwrap();
        let narrower = serde_json::json!({"sessions": ["lab-*"]});
        s.update(
            "kiosk",
            TokenRequest::parse(&narrower, true).unwrap(),
            &TokenScope::default(),
        )
        .unwrap();
        assert!(matches!(
            s.register_live(&stale, "10.0.0.1", &queue(1), LIMITS),
            Err(LiveLimit::Revoked)
        ));

        // Registered before the change: the change closes it.
        let fresh = s.authenticate(&secret).unwrap();
        let open = queue(2);
        s.register_live(&fresh, "10.0.0.1", &open, LIMITS).unwrap();
        s.delete("kiosk", &TokenScope::default()).unwrap();
        assert_eq!(open.close_reason(), Some(CloseReason::TokenRevoked));
        assert!(matches!(
            s.register_live(&fresh, "10.0.0.1", &queue(3), LIMITS),
            Err(LiveLimit::Revoked)
        ));
    }

    #[test]
    fn requests_list_every_problem() {
        let body =
            serde_json::json!({"role": "root", "sessions": "lab", "events": ["a b"], "x": 1});
        let report = TokenRequest::parse(&body, false).unwrap_err();
        assert_eq!(report.errors.len(), 4, "{:?}", report.errors);
    }
}
