//! The layers a configuration is made of: the embedded default, then an optional file,
//! then `SYNOPTICON__SECTION__KEY` variables, each typed like the key it replaces. The
//! layering is a few dozen lines of `toml` tables; a layering crate would not type an
//! environment string by the key it overrides, which is what reports `expected an integer`
//! under the variable's own name.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use synopticon_actors::secrets::{is_secret_key, REDACTED};
use synopticon_actors::validation::Report;

/// The configuration compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "SYNOPTICON__";
/// Environment variable naming a config file (same as `--config`).
pub const CONFIG_FILE_ENV: &str = "SYNOPTICON_CONFIG";

/// Configuration that could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML is malformed.
    #[error("{origin}: {message}")]
    Syntax {
        /// File or "embedded default".
        origin: String,
        /// Parser message.
        message: String,
    },
    /// A key has the wrong type or is unknown.
    #[error("{0}")]
    Shape(String),
}

/// Where each configured value came from, for `/api/runtime`.
#[derive(Debug, Clone, Serialize)]
pub struct EnvVariable {
    /// Variable name.
    pub name: String,
    /// Configuration key it sets (`server.port`), or what it is for.
    pub key: String,
    /// Whether it is set in this process.
    pub set: bool,
    /// Its value, redacted if it looks secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The embedded default with `file` laid over it key by key, then every `SYNOPTICON__`
/// variable of `env`; a variable that names no key or does not parse as its key's type is
/// reported by name (and left out).
pub fn layered(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(toml::Value, Report), ConfigError> {
    let mut report = Report::default();
    let mut root: toml::Table =
        DEFAULT_TOML
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                origin: "embedded default".into(),
                message: e.message().to_string(),
            })?;
    if let Some(path) = file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let overlay: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: shown,
                    message: e.to_string().trim().to_string(),
                })?;
        merge(&mut root, overlay);
    }
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if let Err(e) = set_path(&mut root, &path, &raw) {
            report.error(format!("{name}: {e}"));
        }
    }
    Ok((toml::Value::Table(root), report))
}

/// Makes sure the value at `path` (`log.format`) reads as a `T` (an enum of words): one
/// that does not is reported under its key and replaced by the embedded default, so that
/// the rest of the configuration is still read and every other problem reported with it.
pub fn settle<T: DeserializeOwned>(root: &mut toml::Value, path: &str, report: &mut Report) {
    let Some(value) = lookup(root, path) else {
        return;
    };
    if let Err(e) = T::deserialize(value.clone()) {
        report.error(format!("{path}: {}", e.message().trim()));
        let default: Option<toml::Value> = DEFAULT_TOML
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| lookup(&mut toml::Value::Table(t), path).cloned());
        if let Some(default) = default {
            *value = default;
        }
    }
}

fn lookup<'a>(root: &'a mut toml::Value, path: &str) -> Option<&'a mut toml::Value> {
    path.split('.')
        .try_fold(root, |value, part| value.as_table_mut()?.get_mut(part))
}

/// Every environment variable the server reads, and whether each is set.
pub fn environment_variables() -> Vec<EnvVariable> {
    let mut keys = Vec::new();
    if let Ok(table) = DEFAULT_TOML.parse::<toml::Table>() {
        collect_keys(&table, "", &mut keys);
    }
    let mut vars: BTreeMap<String, EnvVariable> = BTreeMap::new();
    let mut add = |name: String, key: String| {
        if vars.contains_key(&name) {
            return;
        }
        let value = std::env::var(&name).ok();
        let shown = value.map(|v| {
            if is_secret_key(&name) {
                REDACTED.into()
            } else {
                v
            }
        });
        vars.insert(
            name.clone(),
            EnvVariable {
                set: shown.is_some(),
                value: shown,
                name,
                key,
            },
        );
    };
    for key in keys {
        let name = format!(
            "{ENV_PREFIX}{}",
            key.replace('.', "__").to_ascii_uppercase()
        );
        add(name, key);
    }
    add(
        CONFIG_FILE_ENV.into(),
        "configuration file (like --config)".into(),
    );
    add("RUST_LOG".into(), "log filter (overrides log.level)".into());
    // Variables with our prefix that match no key are listed too, so typos show up.
    let unknown: Vec<String> = std::env::vars()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with(ENV_PREFIX))
        .collect();
    for name in unknown {
        add(name, "(no such key: rejected at start)".into());
    }
    vars.into_values().collect()
}

fn collect_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => collect_keys(t, &key, out),
            _ => out.push(key),
        }
    }
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets `path` in `root` from an environment string, typed like the value it replaces.
fn set_path(root: &mut toml::Table, path: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut table = root;
    for (depth, part) in parents.iter().enumerate() {
        table = match table.get_mut(part) {
            Some(toml::Value::Table(t)) => t,
            _ => {
                return Err(format!(
                    "no configuration section {:?}",
                    parents[..=depth].join(".")
                ))
            }
        };
    }
    let value = match table.get(last) {
        None => return Err(format!("no configuration key {:?}", path.join("."))),
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_string()),
        Some(toml::Value::Integer(_)) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("expected an integer, got {raw:?}"))?,
        Some(toml::Value::Boolean(_)) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => return Err(format!("expected true or false, got {raw:?}")),
        },
        Some(toml::Value::Float(_)) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| format!("expected a number, got {raw:?}"))?,
        Some(_) => {
            let parsed: toml::Table = format!("v = {raw}")
                .parse()
                .map_err(|_| format!("expected a TOML value, got {raw:?}"))?;
            parsed.get("v").cloned().ok_or("empty value")?
        }
    };
    table.insert(last.clone(), value);
    Ok(())
}
