//! The published contract (`schemas/v1`, written from the Pydantic models by `make schemas`)
//! as compiled JSON Schemas, checked with an independent validator (the `jsonschema` crate,
//! not the engine's own `schema` module, so a gap in one cannot hide a gap in the other).
//! [`Driver::drain`](super::Driver::drain) checks every output of every engine test with it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

pub const PREFIX: &str = "flowai.v1.";

pub fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/v1")
}

/// `flowai.v1.ToolInvocation` -> `ToolInvocation`.
pub fn short(schema: &str) -> &str {
    schema
        .strip_prefix(PREFIX)
        .unwrap_or_else(|| panic!("schema name `{schema}` does not start with `{PREFIX}`"))
}

/// The compiled schemas of `schemas/v1`, by schema name (`flowai.v1.Query`).
pub struct Contract {
    validators: BTreeMap<String, jsonschema::Validator>,
    known_event_types: BTreeSet<String>,
}

impl Contract {
    fn load() -> Contract {
        let mut validators = BTreeMap::new();
        for entry in fs::read_dir(schemas_dir()).expect("schemas/v1 is readable") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = fs::read_to_string(&path).expect("a schema file is readable");
            let schema: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("{} does not compile: {e}", path.display()));
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            validators.insert(format!("{PREFIX}{stem}"), validator);
        }
        assert!(
            validators.contains_key("flowai.v1.RuntimeEvent"),
            "schemas/v1 has no RuntimeEvent.json; run `make schemas`"
        );
        Contract {
            validators,
            known_event_types: Contract::event_types(),
        }
    }

    /// Every way `envelope` breaks the schema its `schema` field names.
    pub fn violations(&self, envelope: &Value) -> Vec<String> {
        let name = envelope["schema"].as_str().unwrap_or("<no schema field>");
        let Some(validator) = self.validators.get(name) else {
            return vec![format!(
                "no schemas/v1 file for `{name}`; add its model to flowai_harness.messages \
                 and run `make schemas`"
            )];
        };
        validator
            .iter_errors(envelope)
            .map(|e| format!("{name} at `{}`: {e}", e.instance_path()))
            .collect()
    }

    pub fn assert_valid(&self, envelope: &Value, what: &str) {
        let violations = self.violations(envelope);
        assert!(
            violations.is_empty(),
            "{what} breaks its schema:\n  {}\nenvelope: {envelope:#}",
            violations.join("\n  ")
        );
    }

    /// The payload `type`s a run-log entry may have: the discriminator of RuntimeEvent.json.
    pub fn event_types() -> BTreeSet<String> {
        let path = schemas_dir().join("RuntimeEvent.json");
        let schema: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
        // The event union is open: its catch-all (OtherEvent) takes every type but the known
        // ones, which it lists; a type the engine logs must be one of those, not a stranger
        // that only the catch-all lets through.
        let known = schema["$defs"]["OtherEvent"]["properties"]["type"]["not"]["enum"]
            .as_array()
            .expect("RuntimeEvent.json's OtherEvent lists the known event types");
        known
            .iter()
            .map(|kind| kind.as_str().unwrap().to_owned())
            .collect()
    }
}

/// The contract, compiled once per test binary.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(Contract::load)
}

/// Check an output of the engine: it validates against its schema, and a run-log event's
/// `type` is one the schema knows by name (not a stranger only the open union's catch-all,
/// `OtherEvent`, would let through).
pub fn check_output(envelope: &Value) {
    let contract = contract();
    contract.assert_valid(envelope, "an output of the engine");
    if envelope["schema"] == "flowai.v1.RuntimeEvent" {
        let kind = envelope["payload"]["type"].as_str().unwrap_or("<no type>");
        assert!(
            contract.known_event_types.contains(kind),
            "the engine logged a `{kind}` event that RuntimeEvent.json does not describe: add \
             its model to flowai_harness.messages and run `make schemas`\nenvelope: {envelope:#}"
        );
    }
}
