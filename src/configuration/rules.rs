//! `[rules]`: where rule logs and captures go, the SMTP server, and rules declared here.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use synopticon_actors::rules::email::{Security, SmtpSettings};
use synopticon_actors::validation::Report;

use super::declared::named_entry;

/// `[rules]` (docs/RULES.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// JSON log folder.
    pub log_dir: String,
    /// Days of JSON log kept.
    pub log_retention_days: u32,
    /// Captures folder.
    pub captures_dir: String,
    /// Days of captures kept.
    pub captures_retention_days: u32,
    /// Bytes of captures kept at most.
    pub captures_max_bytes: u64,
    /// Folders a `frame_ref` may name.
    pub frame_ref_dirs: Vec<String>,
    /// Matches each action may hold waiting.
    pub queue: usize,
    /// Rules declared here (`[[rules.declared]]`, each with a `name`).
    pub declared: Vec<Json>,
    /// The SMTP server.
    pub smtp: SmtpConfig,
}

/// `[rules.smtp]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host; empty: no e-mail.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `starttls`, `tls` or `none`.
    pub security: Security,
    /// Login.
    pub username: String,
    /// Password.
    pub password: String,
    /// Sender.
    pub from: String,
    /// How long one send may take.
    pub timeout_ms: u64,
}

impl RulesConfig {
    /// The settings the rules run with.
    pub fn settings(&self) -> synopticon_actors::rules::actions::RulesSettings {
        let s = &self.smtp;
        let smtp = (!s.host.is_empty()).then(|| SmtpSettings {
            host: s.host.clone(),
            port: s.port,
            security: s.security,
            username: (!s.username.is_empty()).then(|| s.username.clone()),
            password: (!s.password.is_empty()).then(|| s.password.clone()),
            from: s.from.clone(),
            timeout: std::time::Duration::from_millis(s.timeout_ms),
        });
        synopticon_actors::rules::actions::RulesSettings {
            log_dir: self.log_dir.clone().into(),
            log_retention_days: self.log_retention_days,
            captures_dir: self.captures_dir.clone().into(),
            captures_retention_days: self.captures_retention_days,
            captures_max_bytes: self.captures_max_bytes,
            frame_ref_dirs: self
                .frame_ref_dirs
                .iter()
                .filter_map(|d| std::fs::canonicalize(d).ok())
                .collect(),
            smtp,
            queue: self.queue,
        }
    }

    /// Checks `[rules]` and every declared rule.
    pub fn validate(&self, r: &mut Report) {
        let rules = self;
        if !rules.smtp.host.is_empty()
            && !synopticon_actors::rules::email::is_address(&rules.smtp.from)
        {
            r.error(format!(
                "rules.smtp.from: {:?} is not an address (Name <user@host>)",
                rules.smtp.from
            ));
        }
        if rules.queue == 0 || rules.queue > 1_000_000 {
            r.error("rules.queue: from 1 to 1000000");
        }
        if rules.smtp.timeout_ms == 0 {
            r.error("rules.smtp.timeout_ms: at least 1");
        }
        for d in &rules.frame_ref_dirs {
            if !Path::new(d).is_absolute() {
                r.error(format!(
                    "rules.frame_ref_dirs: {d:?} must be an absolute path"
                ));
            }
        }
        let mut rule_names = Vec::new();
        for (i, entry) in rules.declared.iter().enumerate() {
            let (name, body) = named_entry(entry);
            if rule_names.contains(&name) {
                r.error(format!(
                    "rules.declared[{i}].name: {name:?} is declared twice"
                ));
            }
            if let Err(report) = synopticon_actors::rules::RuleConfig::parse(&name, &body) {
                for e in report.errors {
                    r.error(format!("rules.declared[{i}].{e}"));
                }
            }
            rule_names.push(name);
        }
    }
}
