//! The schema keywords Pydantic models need, through the public API: `pattern`,
//! `patternProperties`, `propertyNames`, JSON-pointer `$ref`, `$id`, exact `multipleOf`; and
//! every schema each allowed Pydantic version emits for such models
//! (tests/unit/fixtures/schemas, written by capture.py there).

use std::path::PathBuf;

use flowai_engine::schema::{check_json, Schema, Violation};
use flowai_engine::ErrorCode;
use serde_json::{json, Value};

fn compile(schema: Value) -> Schema {
    Schema::compile(&schema).unwrap_or_else(|e| panic!("{schema} should compile: {e}"))
}

fn refused(schema: Value) -> String {
    Schema::compile(&schema).expect_err(&format!("{schema} should be refused"))
}

fn lines(schema: &Schema, value: Value) -> Vec<String> {
    let violations: Vec<Violation> = schema
        .validate(&value)
        .expect_err(&format!("{value} should be refused"));
    violations
        .iter()
        .map(|v| format!("{}: {}", v.path, v.message))
        .collect()
}

fn accepts(schema: &Schema, values: &[Value]) {
    for v in values {
        assert_eq!(schema.validate(v), Ok(()), "should accept {v}");
    }
}

#[test]
fn schema_pattern_is_an_unanchored_ecma_search() {
    let sku = compile(json!({"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"}));
    accepts(&sku, &[json!("ABC-1234")]);
    assert_eq!(
        lines(&sku, json!("ABC-١٢٣٤")),
        [": expected a string matching the pattern \"^[A-Z]{3}-\\\\d{4}$\", got \"ABC-١٢٣٤\""]
    );
    assert_eq!(lines(&sku, json!("ABC-1234\n")).len(), 1);
    let anywhere = compile(json!({"pattern": "o+k"}));
    accepts(
        &anywhere,
        &[json!("this is ok, fine"), json!(12), json!(null)],
    );
    assert_eq!(lines(&anywhere, json!("nope")).len(), 1);
    // Length and pattern both report.
    let both = compile(json!({"minLength": 3, "pattern": "^a"}));
    assert_eq!(
        lines(&both, json!("b")),
        [
            ": expected at least 3 characters, got 1",
            ": expected a string matching the pattern \"^a\", got \"b\"",
        ]
    );
}

#[test]
fn schema_pattern_properties_and_additional_properties() {
    let s = compile(json!({
        "properties": {"id": {"type": "integer"}},
        "patternProperties": {"^u_\\d+$": {"type": "integer"}, "_\\d$": {"minimum": 5}},
        "additionalProperties": false
    }));
    accepts(&s, &[json!({"id": 1, "u_1": 7, "u_22": 9})]);
    // Every matching pattern applies, and a declared property is not "additional".
    assert_eq!(
        lines(&s, json!({"u_1": 3, "u_x": 1, "id": "x"})),
        [
            "/u_1: expected a number >= 5, got 3",
            ": unexpected property `u_x`; allowed: `id`, names matching \"^u_\\\\d+$\", names \
             matching \"_\\\\d$\"",
            "/id: expected integer, got string \"x\"",
        ]
    );
    // Without additionalProperties, names matching no pattern are free (Pydantic's dict keys).
    let open = compile(json!({"patternProperties": {"^u_": {"type": "integer"}}}));
    accepts(&open, &[json!({"bob": "x", "u_1": 2})]);
    assert_eq!(
        lines(&open, json!({"u_1": "x"})),
        ["/u_1: expected integer, got string \"x\""]
    );
    let typed_rest = compile(json!({
        "patternProperties": {"^n_": {"type": "number"}},
        "additionalProperties": {"type": "string"}
    }));
    accepts(&typed_rest, &[json!({"n_a": 1, "other": "s"})]);
    assert_eq!(
        lines(&typed_rest, json!({"n_a": "1", "other": 1})),
        [
            "/n_a: expected number, got string \"1\"",
            "/other: expected string, got integer 1",
        ]
    );
}

#[test]
fn schema_property_names_check_every_key() {
    let s = compile(json!({
        "type": "object",
        "propertyNames": {"minLength": 2, "maxLength": 3, "pattern": "^[a-z]+$"},
        "additionalProperties": {"type": "number"}
    }));
    accepts(&s, &[json!({"ab": 1, "xyz": 2.5}), json!({})]);
    assert_eq!(
        lines(&s, json!({"a": 1, "ABCD": 2, "ok": "x"})),
        [
            ": property name \"a\": expected at least 2 characters, got 1",
            ": property name \"ABCD\": expected at most 3 characters, got 4",
            ": property name \"ABCD\": expected a string matching the pattern \"^[a-z]+$\", got \
             \"ABCD\"",
            "/ok: expected number, got string \"x\"",
        ]
    );
    let none = compile(json!({"propertyNames": false}));
    accepts(&none, &[json!({})]);
    assert_eq!(
        lines(&none, json!({"k": 1})),
        [": property name \"k\": no value is allowed here (the schema is `false`)"]
    );
    let enumerated = compile(json!({"propertyNames": {"enum": ["a", "b"]}}));
    accepts(&enumerated, &[json!({"a": 1, "b": 2})]);
    assert_eq!(lines(&enumerated, json!({"c": 1})).len(), 1);
}

#[test]
fn schema_pattern_refusals_name_the_pattern_and_where() {
    let cases = [
        (
            json!({"properties": {"code": {"pattern": "^\\d+\\Z"}}}),
            "the `pattern` regular expression \"^\\\\d+\\\\Z\" cannot be enforced as ECMA-262 \
             (JSON Schema's dialect): `\\Z` at character 4 has no meaning in ECMA-262 regular \
             expressions (the dialect of JSON Schema patterns); for the end of the text write \
             `$` at /properties/code",
        ),
        (
            json!({"$defs": {"M": {"patternProperties": {"(?i)^x": {}}}}, "$ref": "#/$defs/M"}),
            "the `patternProperties` regular expression \"(?i)^x\" cannot be enforced as \
             ECMA-262 (JSON Schema's dialect): the group `(?i` at character 0 is not ECMA-262; \
             inline flags such as `(?i)` are not ECMA-262, spell the cases out, e.g. `[Aa]` at \
             /$defs/M",
        ),
        (
            json!({"items": {"propertyNames": {"pattern": "(?:(a)|b)*\\1"}}}),
            "the `pattern` regular expression \"(?:(a)|b)*\\\\1\" cannot be enforced as ECMA-262 \
             (JSON Schema's dialect): the backreference `\\1` cannot be matched as ECMA-262 \
             does: its group is inside a repeated part, whose captures ECMA-262 clears on every \
             repetition at /items/propertyNames",
        ),
    ];
    for (schema, expected) in cases {
        assert_eq!(refused(schema), expected);
    }
    let error = check_json(br#"{"pattern": "a{,2}"}"#, b"\"a\"").expect_err("refused");
    assert_eq!(error.code, ErrorCode::SpecInvalidSchema);
    assert!(error.message.contains("\"a{,2}\""), "{}", error.message);
}

#[test]
fn schema_pattern_that_backtracks_too_much_refuses_the_value() {
    let hostile = "^(a|a)*\\1b$";
    let value = json!("a".repeat(40));
    let expected = ": gave up matching the string against the pattern \"^(a|a)*\\\\1b$\" after \
                    1000000 backtracking steps, so the value is refused; the pattern backtracks \
                    too much on it (nested quantifiers around a backreference or lookaround \
                    usually do this)";
    let plain = compile(json!({"pattern": hostile}));
    assert_eq!(lines(&plain, value.clone()), [expected]);
    // Where the failing match would let the value through, it is refused all the same.
    for schema in [
        json!({"not": {"pattern": hostile}}),
        json!({"anyOf": [{"pattern": hostile}, {"type": "string"}]}),
        json!({"oneOf": [{"pattern": hostile}, {"type": "integer"}]}),
        json!({"items": {"not": {"pattern": hostile}}}),
    ] {
        let s = compile(schema.clone());
        let value = if schema.get("items").is_some() {
            json!([value.clone()])
        } else {
            value.clone()
        };
        let got = lines(&s, value);
        assert!(
            got.iter().any(|l| l.contains("gave up matching")),
            "{schema}: {got:?}"
        );
    }
    // Keys too; and the validator stops at the first give-up instead of trying every item.
    let keys = compile(json!({"patternProperties": {hostile: {}}}));
    let key = "a".repeat(40);
    let got = lines(&keys, json!({ key: 1 }));
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("the property name `aaaa"), "{got:?}");
    let many = compile(json!({"items": {"pattern": hostile}}));
    assert_eq!(lines(&many, json!(vec![value; 50])).len(), 1);
}

#[test]
fn schema_multiple_of_is_exact_for_decimal_steps() {
    let tenth = compile(json!({"multipleOf": 0.1}));
    accepts(
        &tenth,
        &[json!(0.3), json!(1.7), json!(-0.2), json!(5), json!(1e300)],
    );
    for value in [json!(0.30000000001), json!(0.35), json!(1e-300)] {
        assert_eq!(
            lines(&tenth, value.clone()),
            [format!(": expected a multiple of 0.1, got {value}")]
        );
    }
    let cents = compile(json!({"multipleOf": 0.01}));
    accepts(&cents, &[json!(19.99), json!(0.07), json!(1234567.89)]);
    assert_eq!(lines(&cents, json!(19.999)).len(), 1);
    let tiny = compile(json!({"multipleOf": 1e-32}));
    // Outside serde_json's fast path, float_roundtrip keeps 6.3e-31 exactly 6.3e-31.
    let parsed: Value = serde_json::from_str("6.3e-31").expect("JSON");
    accepts(&tiny, &[parsed]);
    let whole = compile(json!({"multipleOf": 7}));
    accepts(&whole, &[json!(14), json!(14.0), json!(-7)]);
    assert_eq!(lines(&whole, json!(14.5)).len(), 1);
    let huge = compile(json!({"multipleOf": u64::MAX}));
    accepts(&huge, &[json!(u64::MAX), json!(0)]);
    assert_eq!(lines(&huge, json!(u64::MAX - 1)).len(), 1);
}

#[test]
fn schema_ref_is_a_json_pointer_into_the_root() {
    let s = compile(json!({
        "$defs": {"My Model": {"type": "integer"}, "a/b": {"type": "string"}, "t~x": {"const": 1},
                  "Outer": {"$defs": {"Inner": {"type": "boolean"}}}},
        "properties": {
            "spaced": {"$ref": "#/$defs/My%20Model"},
            "slashed": {"$ref": "#/$defs/a~1b"},
            "slashed_encoded": {"$ref": "#/$defs/a%7E1b"},
            "tilde": {"$ref": "#/$defs/t~0x"},
            "nested": {"$ref": "#/$defs/Outer/$defs/Inner"},
            "sibling": {"$ref": "#/properties/spaced"},
            "branch": {"anyOf": [{"type": "null"}, {"maximum": 3}]},
            "into_list": {"$ref": "#/properties/branch/anyOf/1"}
        }
    }));
    accepts(
        &s,
        &[
            json!({"spaced": 1, "slashed": "x", "slashed_encoded": "y", "tilde": 1,
                 "nested": true, "sibling": 2, "into_list": 3}),
        ],
    );
    assert_eq!(
        lines(
            &s,
            json!({"spaced": "1", "slashed": 1, "slashed_encoded": 2, "tilde": 2, "nested": 0,
                   "sibling": 2.5, "into_list": 4})
        ),
        [
            "/spaced: expected integer, got string \"1\"",
            "/slashed: expected string, got integer 1",
            "/slashed_encoded: expected string, got integer 2",
            "/tilde: expected 1, got 2",
            "/nested: expected boolean, got integer 0",
            "/sibling: expected integer, got number 2.5",
            "/into_list: expected a number <= 3, got 4",
        ]
    );
    // A base equal to the root's own `$id` is this schema.
    let with_id = compile(json!({
        "$id": "https://example.test/order.json",
        "$defs": {"Qty": {"type": "integer"}},
        "items": {"$ref": "https://example.test/order.json#/$defs/Qty"}
    }));
    accepts(&with_id, &[json!([1, 2])]);
    assert_eq!(lines(&with_id, json!(["x"])).len(), 1);
    assert!(
        refused(json!({"$ref": "https://elsewhere.test/x.json#/$defs/Qty"}))
            .contains("resolves references inside this schema only")
    );
}

#[test]
fn schema_id_in_a_subschema_is_refused() {
    // Under `$id`, "#/$defs/A" would mean the subschema's own `$defs`, not the root's.
    let message = refused(json!({
        "$defs": {"A": {"type": "string"}},
        "properties": {"x": {"$id": "inner.json", "$defs": {"A": {"type": "integer"}},
                             "$ref": "#/$defs/A"}}
    }));
    assert!(
        message.starts_with("`$id` inside a subschema is not supported: it would change the base"),
        "{message}"
    );
    assert!(message.ends_with(" at /properties/x"), "{message}");
    compile(json!({"$id": "root.json", "type": "object"}));
}

#[derive(Debug)]
struct Fixture {
    file: String,
    document: Value,
}

fn fixtures() -> Vec<Fixture> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/unit/fixtures/schemas");
    let mut found: Vec<Fixture> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path.file_name()?.to_str()?.to_owned();
            (name.starts_with("pydantic-") && name.ends_with(".json")).then(|| Fixture {
                document: serde_json::from_slice(&std::fs::read(&path).expect("readable"))
                    .expect("fixture is JSON"),
                file: name,
            })
        })
        .collect();
    found.sort_by(|a, b| a.file.cmp(&b.file));
    found
}

#[test]
fn schema_every_pydantic_version_the_project_allows() {
    let fixtures = fixtures();
    // pyproject: pydantic>=2.7,<3; each minor version from 2.7 on has its capture.
    let minors: Vec<u32> = fixtures
        .iter()
        .map(|f| {
            let version = f.document["pydantic"].as_str().expect("version");
            version
                .split('.')
                .nth(1)
                .expect("minor")
                .parse()
                .expect("number")
        })
        .collect();
    let newest = minors.iter().copied().max().expect("fixtures exist");
    for minor in 7..=newest {
        assert!(minors.contains(&minor), "no capture of pydantic 2.{minor}");
    }
    let mut checked = 0;
    for fixture in &fixtures {
        for model in fixture.document["models"].as_array().expect("models") {
            let name = format!("{} {}", fixture.file, model["name"]);
            let schema = Schema::compile(&model["schema"])
                .unwrap_or_else(|e| panic!("{name}: the schema does not compile: {e}"));
            for case in model["cases"].as_array().expect("cases") {
                let expected = case["schema"].as_bool().expect("verdict");
                let got = schema.validate(&case["value"]);
                assert_eq!(
                    got.is_ok(),
                    expected,
                    "{name}: {} should be {}: {got:?}",
                    case["value"],
                    if expected { "accepted" } else { "refused" }
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 8 * 30, "only {checked} cases");
}
