//! E-mail over SMTP (lettre): plain, STARTTLS or implicit TLS, with credentials, and JPEG
//! attachments.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Map, Value};

use crate::validation::{kind_of, Report};

/// How the SMTP connection is protected (`rules.smtp.security`: `none`, `starttls` or
/// `tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain text (a relay on the same machine or a test server).
    None,
    /// Plain, then `STARTTLS` (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// The SMTP server rules send through (`[rules.smtp]`).
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Protection.
    pub security: Security,
    /// Login, if the server wants one.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// The sender (`Synopticon <alerts@lab.example>`).
    pub from: String,
    /// How long one send may take.
    pub timeout: Duration,
}

/// What an `email_immediate` action sends.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailConfig {
    /// Recipients.
    pub to: Vec<String>,
    /// Subject template (`{rule}`, `{event}`, `{source}`, `{device}`, `{line}`, `{zone}`,
    /// `{class}`, `{direction}`, `{track}`, `{time}`).
    pub subject: String,
    /// Body template, the same placeholders.
    pub body: String,
    /// Attach the frame capture.
    pub attach_capture: bool,
}

/// Fields of an `email_immediate` action.
pub const FIELDS: &[&str] = &["to", "subject", "body", "attachCapture"];

/// Whether `text` is an address (`user@host` or `Name <user@host>`).
pub fn is_address(text: &str) -> bool {
    text.parse::<Mailbox>().is_ok()
}

/// Reads recipients: one address or a list, each checked.
pub fn recipients(at: &str, v: Option<&Value>, report: &mut Report) -> Vec<String> {
    let list: Vec<String> = match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        other => {
            report.error(format!(
                "{at}.to: an address or a list of addresses, got {}",
                other.map_or("nothing", kind_of)
            ));
            return Vec::new();
        }
    };
    if list.is_empty() {
        report.error(format!("{at}.to: at least one address"));
    }
    for a in &list {
        if a.parse::<Mailbox>().is_err() {
            report.error(format!("{at}.to: {a:?} is not an e-mail address"));
        }
    }
    list
}

fn template(
    at: &str,
    map: &Map<String, Value>,
    key: &str,
    default: &str,
    report: &mut Report,
) -> String {
    match map.get(key) {
        None | Some(Value::Null) => default.to_string(),
        Some(Value::String(s)) if s.len() <= 10_000 => s.clone(),
        Some(_) => {
            report.error(format!("{at}.{key}: a string of at most 10000 bytes"));
            default.to_string()
        }
    }
}

impl EmailConfig {
    pub(super) fn parse(at: &str, map: &Map<String, Value>, report: &mut Report) -> Option<Self> {
        Some(EmailConfig {
            to: recipients(at, map.get("to"), report),
            subject: template(at, map, "subject", "[Synopticon] {rule}: {event} at {source}", report),
            body: template(
                at,
                map,
                "body",
                "Rule {rule} matched {event} at {time}.\nSource: {source}  Device: {device}\nLine: {line}  Zone: {zone}  Class: {class}  Direction: {direction}  Track: {track}\n",
                report,
            ),
            attach_capture: match map.get("attachCapture") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    report.error(format!("{at}.attachCapture: true or false"));
                    true
                }
            },
        })
    }
}

/// Why a message was not sent.
#[derive(Debug, Clone)]
pub struct SendError {
    /// What happened.
    pub message: String,
    /// Whether trying again later may work (the server away, a 4xx reply).
    pub retryable: bool,
}

/// Sends one message with `attachments` (`(file name, JPEG bytes)`).
pub async fn send(
    smtp: &SmtpSettings,
    to: &[String],
    subject: &str,
    body: &str,
    attachments: &[(String, bytes::Bytes)],
) -> Result<(), SendError> {
    let fail = |message: String| SendError {
        message,
        retryable: false,
    };
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| fail(format!("rules.smtp.from: {e}")))?;
    let mut builder = Message::builder().from(from).subject(subject_line(subject));
    for t in to {
        builder = builder.to(t.parse().map_err(|e| fail(format!("{t}: {e}")))?);
    }
    let text = SinglePart::plain(body.to_string());
    let message = if attachments.is_empty() {
        builder.singlepart(text)
    } else {
        let mut parts = MultiPart::mixed().singlepart(text);
        for (name, jpeg) in attachments {
            parts = parts.singlepart(Attachment::new(name.clone()).body(
                jpeg.to_vec(),
                ContentType::parse("image/jpeg").map_err(|e| fail(e.to_string()))?,
            ));
        }
        builder.multipart(parts)
    }
    .map_err(|e| fail(format!("cannot build the message: {e}")))?;
    let transport = transport(smtp).map_err(|e| SendError {
        message: e,
        retryable: false,
    })?;
    match transport.send(message).await {
        Ok(_) => Ok(()),
        Err(e) => Err(SendError {
            // A refusal of the message itself (5xx) will not change by trying again.
            retryable: !e.is_permanent(),
            message: format!("SMTP {}:{}: {e}", smtp.host, smtp.port),
        }),
    }
}

/// Longest subject sent, in characters: a header line can be folded only where it has
/// spaces, and SMTP servers refuse lines over 998 bytes, so a long one would fail the
/// alert for good.
const MAX_SUBJECT_CHARS: usize = 200;

/// A subject as it can be sent: on one line (line breaks and other control characters
/// become spaces) and at most [`MAX_SUBJECT_CHARS`] long (cut, ending in `...`). The body
/// needs nothing of the kind: long lines go out quoted-printable, folded losslessly.
pub fn subject_line(subject: &str) -> String {
    let one_line: String = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(MAX_SUBJECT_CHARS) {
        Some((end, _)) => format!("{}...", &one_line[..end]),
        None => one_line,
    }
}

fn transport(smtp: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let builder = match smtp.security {
        Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| format!("rules.smtp: {e}"))?,
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
            .map_err(|e| format!("rules.smtp: {e}"))?,
    };
    let mut builder = builder.port(smtp.port).timeout(Some(smtp.timeout));
    if let Some(user) = &smtp.username {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            smtp.password.clone().unwrap_or_default(),
        ));
    }
    Ok(builder.build())
}
