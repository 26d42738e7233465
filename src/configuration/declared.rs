//! What is declared in lists: `[[sources]]` and `[[inputs]]` (and the `name` every
//! `[[inputs]]` and `[[rules.declared]]` entry carries), checked as the API would check
//! them when made over REST.

use serde_json::Value as Json;
use synopticon_actors::inference::hub::InferenceSettings;
use synopticon_actors::source::{SourceConfig, SourceKind};
use synopticon_actors::validation::Report;

/// A named entry (`[[inputs]]`, `[[rules.declared]]`) as its name and its settings (the
/// entry without `name`).
pub fn named_entry(entry: &Json) -> (String, Json) {
    let name = entry["name"].as_str().unwrap_or_default().to_string();
    let mut body = entry.clone();
    if let Json::Object(map) = &mut body {
        map.remove("name");
    }
    (name, body)
}

/// Checks every declared source: its settings, the model it names, its id.
pub fn check_sources(sources: &[SourceConfig], inference: &InferenceSettings, r: &mut Report) {
    let mut source_ids = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let report = source.validate();
        for e in report.errors {
            r.error(format!("sources[{i}].{e}"));
        }
        if source.kind != SourceKind::External {
            let wanted = source
                .model
                .as_deref()
                .filter(|m| !m.is_empty())
                .unwrap_or(&inference.default_model);
            let names: Vec<&str> = inference.models.iter().map(|m| m.name.as_str()).collect();
            // An empty default means the first model.
            let first_model = wanted.is_empty() && !names.is_empty();
            if !first_model && !names.contains(&wanted) {
                r.error(format!(
                    "sources[{i}].model: no model named {wanted:?} (configured: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            }
        }
        let reserved = synopticon_actors::devices::registry::DEVICE_SOURCE_PREFIX;
        if source.id.starts_with(reserved) {
            r.error(format!(
                "sources[{i}].id: {:?}: ids starting with {reserved:?} are the sources of registered devices",
                source.id
            ));
        }
        if source_ids.contains(&source.id) {
            r.error(format!(
                "sources[{i}].id: {:?} is declared twice",
                source.id
            ));
        }
        source_ids.push(source.id.clone());
    }
}

/// Checks every declared input; `instance` is this instance's name (`store.instance`).
pub fn check_inputs(inputs: &[Json], instance: &str, r: &mut Report) {
    let mut names = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let (name, body) = named_entry(input);
        if names.contains(&name) {
            r.error(format!("inputs[{i}].name: {name:?} is declared twice"));
        }
        if let Err(report) = synopticon_actors::input::InputConfig::parse(&name, &body, instance) {
            for e in report.errors {
                r.error(format!("inputs[{i}].{e}"));
            }
        }
        names.push(name);
    }
}
