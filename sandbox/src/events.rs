//! Trigger events for `perfmon-sandbox run`: named samples (`--event sqs`), embedded from
//! `fixtures/events/NAME.json` so the binary needs no checkout, and JSON files or directories of them
//! (`--event-file`), so a function can be tried offline with the event shapes its triggers send.

use std::path::Path;

use serde_json::Value;

/// The named samples: (name, JSON text). Names are section 14's `Trigger` values.
pub const SAMPLES: [(&str, &str); 12] = [
    ("alb", include_str!("../../fixtures/events/alb.json")),
    ("api-gateway-http", include_str!("../../fixtures/events/api-gateway-http.json")),
    ("api-gateway-rest", include_str!("../../fixtures/events/api-gateway-rest.json")),
    ("api-gateway-websocket", include_str!("../../fixtures/events/api-gateway-websocket.json")),
    ("dynamodb-streams", include_str!("../../fixtures/events/dynamodb-streams.json")),
    ("eventbridge", include_str!("../../fixtures/events/eventbridge.json")),
    ("function-url", include_str!("../../fixtures/events/function-url.json")),
    ("kinesis", include_str!("../../fixtures/events/kinesis.json")),
    ("s3", include_str!("../../fixtures/events/s3.json")),
    ("schedule", include_str!("../../fixtures/events/schedule.json")),
    ("sns", include_str!("../../fixtures/events/sns.json")),
    ("sqs", include_str!("../../fixtures/events/sqs.json")),
];

/// One event to invoke with, and where it came from (`sample:sqs`, or the file's path).
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerEvent {
    pub label: String,
    pub event: Value,
}

/// The names of the samples, comma-separated (for messages).
pub fn sample_names() -> String {
    SAMPLES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// The named sample, or an error listing the names.
pub fn sample(name: &str) -> Result<TriggerEvent, String> {
    let (_, text) = SAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| format!("--event: no sample named {name:?} (samples: {})", sample_names()))?;
    let event =
        serde_json::from_str(text).map_err(|e| format!("--event {name}: the embedded sample is not JSON: {e}"))?;
    Ok(TriggerEvent { label: format!("sample:{name}"), event })
}

/// A JSON file, or every `*.json` file of a directory (not recursive) in name order. Any JSON value is
/// an event (Lambda passes it as is); a file that is not JSON, or a directory without one, is an error
/// that names it.
pub fn from_path(path: &Path) -> Result<Vec<TriggerEvent>, String> {
    let files = if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| format!("--event-file {}: {e}", path.display()))?;
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!("--event-file {}: no *.json file in this directory", path.display()));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .iter()
        .map(|f| {
            let text = std::fs::read(f).map_err(|e| format!("--event-file {}: {e}", f.display()))?;
            let event =
                serde_json::from_slice(&text).map_err(|e| format!("--event-file {}: not JSON: {e}", f.display()))?;
            Ok(TriggerEvent { label: f.display().to_string(), event })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_a_json_object_named_after_its_file() {
        for (name, _) in SAMPLES {
            let s = sample(name).unwrap();
            assert!(s.event.is_object(), "{name}");
            assert_eq!(s.label, format!("sample:{name}"));
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/events");
        let files = from_path(&dir).unwrap();
        assert!(files.len() >= SAMPLES.len(), "every sample is a file of fixtures/events/");
        for (name, _) in SAMPLES {
            let file = files.iter().find(|f| f.label.ends_with(&format!("/{name}.json"))).unwrap();
            assert_eq!(file.event, sample(name).unwrap().event, "{name}");
        }
    }

    #[test]
    fn unknown_names_and_bad_files_are_refused_with_their_name() {
        let e = sample("carrier-pigeon").unwrap_err();
        assert!(e.contains("carrier-pigeon") && e.contains("sqs"), "{e}");
        let dir = std::env::temp_dir().join(format!("sandbox-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        let e = from_path(&bad).unwrap_err();
        assert!(e.contains("bad.json") && e.contains("not JSON"), "{e}");
        std::fs::remove_file(&bad).unwrap();
        let e = from_path(&dir).unwrap_err();
        assert!(e.contains("no *.json"), "{e}");
        std::fs::write(dir.join("b.json"), "\"plain string\"").unwrap();
        std::fs::write(dir.join("a.json"), "[1, 2]").unwrap();
        let got: Vec<Value> = from_path(&dir).unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(got, [serde_json::json!([1, 2]), serde_json::json!("plain string")], "name order, any JSON value");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
