//! `${NAME}` and `${NAME:-default}` in templates and session requests, resolved from the
//! environment when a session is created.
//!
//! A lab's template can say `"broker": "${MQTT_BROKER:-mqtt://localhost:1883}"` and each
//! machine sets its own broker. Only variables whose names match `sessions.placeholder_vars`
//! may be read: a session's settings go out to peers (a webhook's headers, a topic), so an
//! operator must not be able to send the server's own secrets anywhere by naming them. An
//! unset variable without a default, a name not allowed and a malformed placeholder are
//! validation errors naming the field.

use serde_json::Value;

use crate::glob::Glob;

/// One placeholder found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The variable's name.
    pub name: String,
    /// What `:-` gives when it is unset (or empty).
    pub default: Option<String>,
}

/// What the environment gives a placeholder; a function so tests need no real variables.
pub trait Environment {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process's own environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Every placeholder in `text`, or why it cannot be read.
pub fn find(text: &str) -> Result<Vec<Placeholder>, String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            format!(
                "{:?}: a placeholder ${{ is not closed with }}",
                shorten(text)
            )
        })?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (inner, None),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "${{{inner}}}: a variable name is letters, digits and _, not starting with a digit"
            ));
        }
        found.push(Placeholder {
            name: name.to_string(),
            default,
        });
        rest = &after[end + 1..];
    }
    Ok(found)
}

fn shorten(text: &str) -> String {
    text.chars().take(60).collect()
}

/// A placeholder that could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, with the field's path.
    pub message: String,
    /// Only that a variable is unset (a template may name one set later).
    pub unset: bool,
}

/// Replaces every placeholder in the strings of `value`, reporting each problem with the
/// path of its field (`at` is the path of `value`).
pub fn resolve(
    value: &mut Value,
    at: &str,
    allowed: &[Glob],
    env: &dyn Environment,
    problems: &mut Vec<Problem>,
) {
    match value {
        Value::String(text) if text.contains("${") => match substitute(text, allowed, env) {
            Ok(done) => *text = done,
            Err((e, unset)) => problems.push(Problem {
                message: format!("{at}: {e}"),
                unset,
            }),
        },
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                resolve(v, &format!("{at}.{k}"), allowed, env, problems);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                resolve(v, &format!("{at}[{i}]"), allowed, env, problems);
            }
        }
        _ => {}
    }
}

fn substitute(
    text: &str,
    allowed: &[Glob],
    env: &dyn Environment,
) -> Result<String, (String, bool)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    for p in find(text).map_err(|e| (e, false))? {
        let start = rest.find("${").unwrap_or(0);
        let end = rest[start..]
            .find('}')
            .map_or(rest.len(), |e| start + e + 1);
        out.push_str(&rest[..start]);
        if !allowed.iter().any(|g| g.matches(&p.name)) {
            return Err((
                format!(
                    "${{{}}} is not a variable sessions may read (sessions.placeholder_vars)",
                    p.name
                ),
                false,
            ));
        }
        match (env.get(&p.name).filter(|v| !v.is_empty()), &p.default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err((
                    format!(
                        "${{{}}} is not set and has no default (write ${{{}:-value}} for one)",
                        p.name, p.name
                    ),
                    true,
                ))
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The placeholders in every string of `value`.
pub fn referenced(value: &Value, out: &mut Vec<Placeholder>) {
    match value {
        Value::String(text) => out.extend(find(text).unwrap_or_default()),
        Value::Object(map) => map.values().for_each(|v| referenced(v, out)),
        Value::Array(items) => items.iter().for_each(|v| referenced(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    struct Env(HashMap<&'static str, &'static str>);

    impl Environment for Env {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    #[test]
    fn placeholders_take_the_variable_then_the_default_and_name_what_is_missing() {
        let env = Env(HashMap::from([
            ("MQTT_BROKER", "mqtt://lab:1883"),
            ("LAB_ROOM", "b12"),
        ]));
        let allowed = [Glob::new("MQTT_*"), Glob::new("LAB_*")];
        let mut v = json!({"mqtt": {"broker": "${MQTT_BROKER:-mqtt://localhost:1883}",
            "topic": "lab/${LAB_ROOM}/${LAB_DESK:-d1}/{event}", "qos": 1},
            "udp": {"targets": ["${LAB_UDP}", "${HOME}"]}, "bad": "${9X}", "open": "${LAB_ROOM"});
        let mut problems = Vec::new();
        resolve(&mut v, "distributors", &allowed, &env, &mut problems);
        let errors: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
        assert_eq!(v["mqtt"]["broker"], "mqtt://lab:1883");
        assert_eq!(v["mqtt"]["topic"], "lab/b12/d1/{event}");
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("distributors.bad:"), "{errors:?}");
        assert!(errors
            .iter()
            .any(|e| e.contains("distributors.udp.targets[0]: ${LAB_UDP} is not set")));
        assert!(errors
            .iter()
            .any(|e| e.contains("${HOME} is not a variable sessions may read")));
        assert!(errors.iter().any(|e| e.contains("is not closed")));
        assert_eq!(problems.iter().filter(|p| p.unset).count(), 1);
    }
}
