//! The JSON Schema subset that tool input and output schemas are written in.
//!
//! Owns: checking a user's schema once, at spec-compile time, and turning it into a flat table
//! of nodes; validating tool-call values against that table on the hot path of every call, with
//! violations that name a JSON-pointer path and say what was expected.
//!
//! Every keyword the validator cannot enforce is refused at compile time rather than ignored, so
//! a schema that compiles is fully enforced (annotations aside). `pattern`, `patternProperties`
//! and `propertyNames` are ECMA-262 regular expressions (see `ecma`); one whose meaning the
//! engine cannot keep is refused, and a match that hits the backtracking limit refuses the value.
//! `multipleOf` is decided on decimal values (see `decimal`). `$ref` is a JSON pointer into the
//! root schema (percent-encoded or not), resolved lazily, so recursive models compile to a cyclic
//! table instead of an infinite tree; `$id` is accepted on the root only, because one inside a
//! subschema would change the base that its `$ref`s resolve against.
//!
//! Must not import anything beyond std, serde_json and fancy-regex (through `ecma`): no I/O, no
//! clock, no randomness.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

mod decimal;
mod ecma;

use decimal::{Decimal, Divisor};
use ecma::{GaveUp, Pattern};

use serde_json::{Map, Number, Value};

/// Validation stops collecting after this many violations; more would only bury the first ones.
const MAX_VIOLATIONS: usize = 20;
/// Values nested deeper than this are refused rather than risking the stack.
const MAX_DEPTH: usize = 256;
/// Above this many items `uniqueItems` sorts instead of comparing every pair.
const PAIRWISE_UNIQUE_LIMIT: usize = 16;

/// Node 0 accepts everything, node 1 rejects everything; `true`/`false` subschemas share them.
const ANY: usize = 0;
const NEVER: usize = 1;
/// The root schema is reserved right after them, so `"$ref": "#"` can point at it.
const ROOT_NODE: usize = 2;

/// Keywords that carry no constraint; accepted anywhere and ignored.
const ANNOTATIONS: [&str; 11] = [
    "title",
    "description",
    "default",
    "examples",
    "format",
    "$schema",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "discriminator",
];

const SUPPORTED: &str = "type, properties, patternProperties, additionalProperties, \
    propertyNames, required, minProperties, maxProperties, items, prefixItems, minItems, \
    maxItems, uniqueItems, minLength, maxLength, pattern, minimum, maximum, exclusiveMinimum, \
    exclusiveMaximum, multipleOf, enum, const, anyOf, oneOf, allOf, not, $ref, $defs, \
    definitions, $id (root only)";

/// A compiled schema: cheap to clone, immutable, validates without cloning the value.
#[derive(Clone, Debug)]
pub struct Schema {
    nodes: Arc<[Node]>,
    root: usize,
}

/// One way a value fails its schema. `path` is a JSON pointer into the value ("" for the root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: {}", at(&self.path), self.message)
    }
}

/// Check JSON `value` against JSON Schema `schema` (both as bytes): the validator the engine
/// uses for tool arguments, for callers outside the engine (e.g. reference values).
pub fn check_json(schema: &[u8], value: &[u8]) -> crate::error::Result<()> {
    use crate::error::{EngineError, ErrorCode};
    let schema: Value = serde_json::from_slice(schema).map_err(|e| {
        EngineError::new(
            ErrorCode::SpecInvalidSchema,
            format!("the schema is not JSON: {e}"),
        )
    })?;
    let schema =
        Schema::compile(&schema).map_err(|m| EngineError::new(ErrorCode::SpecInvalidSchema, m))?;
    let value: Value = serde_json::from_slice(value).map_err(|e| {
        EngineError::new(
            ErrorCode::InputMalformed,
            format!("the value is not JSON: {e}"),
        )
    })?;
    schema
        .validate(&value)
        .map_err(|violations| EngineError::new(ErrorCode::InputMalformed, describe(&violations)))
}

/// Joins violations into one sentence for an error message.
pub fn describe(violations: &[Violation]) -> String {
    let mut out = String::from("arguments do not match the schema");
    for (i, v) in violations.iter().enumerate() {
        out.push_str(if i == 0 { ": " } else { "; " });
        out.push_str(&v.to_string());
    }
    out
}

impl Schema {
    /// Checks the schema itself and compiles it. The error names the keyword and the schema path.
    pub fn compile(schema: &Value) -> Result<Schema, String> {
        let mut compiler = Compiler {
            root: schema,
            nodes: vec![Node::Any, Node::Never],
            paths: vec![String::new(), String::new()],
            defs: HashMap::new(),
            pending: VecDeque::new(),
        };
        let root = compiler.reserve(String::new());
        debug_assert_eq!(root, ROOT_NODE);
        compiler.compile_into(root, schema, "")?;
        while let Some((index, value, path)) = compiler.pending.pop_front() {
            compiler.compile_into(index, value, &path)?;
        }
        compiler.check_cycles()?;
        Ok(Schema {
            nodes: compiler.nodes.into(),
            root,
        })
    }

    /// Validates a value; the error lists every violation found, up to a limit.
    pub fn validate(&self, value: &Value) -> Result<(), Vec<Violation>> {
        let mut sink = Sink::collecting();
        let passed = self.check(self.root, value, &Path::ROOT, &mut sink);
        match sink.gave_up {
            // A match that gave up decides nothing, wherever it was (even under `not` or in an
            // `anyOf` branch), so the value is refused rather than let through.
            Some(gave_up) => {
                if !sink.errors.contains(&gave_up) {
                    sink.errors.truncate(MAX_VIOLATIONS - 1);
                    sink.errors.push(gave_up);
                }
                Err(sink.errors)
            }
            None if passed => Ok(()),
            None => {
                debug_assert!(
                    !sink.errors.is_empty(),
                    "a failed check reports a violation"
                );
                Err(sink.errors)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compiled form

#[derive(Debug)]
enum Node {
    Any,
    Never,
    Check(Box<Checks>),
}

/// The constraints of one schema object. Node indices point into `Schema::nodes`.
#[derive(Debug, Default)]
struct Checks {
    types: Types,
    /// Sorted by name, so an object's keys are matched by binary search.
    properties: Vec<Prop>,
    /// `patternProperties`: every key matching a pattern is checked against its node.
    pattern_properties: Vec<(Pattern, usize)>,
    /// `propertyNames`: every key, as a string, is checked against this node.
    property_names: Option<usize>,
    /// Names from `required`, in the order given, for reporting the missing ones.
    required: Vec<Box<str>>,
    additional: Option<usize>,
    min_properties: Option<usize>,
    max_properties: Option<usize>,
    prefix_items: Vec<usize>,
    items: Option<usize>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    unique_items: bool,
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<Pattern>,
    minimum: Option<Num>,
    maximum: Option<Num>,
    exclusive_minimum: Option<Num>,
    exclusive_maximum: Option<Num>,
    multiple_of: Option<Step>,
    enumeration: Option<Vec<Value>>,
    constant: Option<Value>,
    reference: Option<usize>,
    all_of: Vec<usize>,
    any_of: Vec<usize>,
    one_of: Vec<usize>,
    not: Option<usize>,
}

#[derive(Debug)]
struct Prop {
    name: Box<str>,
    /// None for a name that is only `required`: its value is then checked as an additional one.
    node: Option<usize>,
    required: bool,
}

impl Checks {
    /// Nodes validated against the same value, i.e. edges that do not descend into it.
    fn same_value_edges(&self) -> impl Iterator<Item = usize> + '_ {
        self.reference
            .iter()
            .chain(&self.all_of)
            .chain(&self.any_of)
            .chain(&self.one_of)
            .chain(self.not.iter())
            .copied()
    }
}

/// A set of JSON types; empty means unconstrained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Types(u8);

/// Bit i of `Types` is `TYPE_NAMES[i]`; "null" last so messages read "string or null".
const TYPE_NAMES: [&str; 7] = [
    "string", "number", "integer", "boolean", "object", "array", "null",
];
const STRING_BIT: u8 = 1;
const NUMBER_BIT: u8 = 1 << 1;
const INTEGER_BIT: u8 = 1 << 2;
const BOOLEAN_BIT: u8 = 1 << 3;
const OBJECT_BIT: u8 = 1 << 4;
const ARRAY_BIT: u8 = 1 << 5;
const NULL_BIT: u8 = 1 << 6;

impl Types {
    fn parse(value: &Value) -> Result<Types, String> {
        let bit = |name: &Value| match name {
            Value::String(s) => match TYPE_NAMES.iter().position(|t| t == s) {
                Some(i) => Ok(1u8 << i),
                None => Err(format!(
                    "unknown type `{s}` in `type`; expected one of {}",
                    TYPE_NAMES.join(", ")
                )),
            },
            _ => Err("`type` must be a string or array of strings".to_string()),
        };
        match value {
            Value::Array(names) if names.is_empty() => {
                Err("`type` must not be an empty array".to_string())
            }
            Value::Array(names) => names
                .iter()
                .try_fold(Types(0), |acc, n| Ok(Types(acc.0 | bit(n)?))),
            other => bit(other).map(Types),
        }
    }

    fn is_any(self) -> bool {
        self.0 == 0
    }

    fn matches(self, value: &Value) -> bool {
        let bit = match value {
            Value::Null => NULL_BIT,
            Value::Bool(_) => BOOLEAN_BIT,
            Value::Object(_) => OBJECT_BIT,
            Value::Array(_) => ARRAY_BIT,
            Value::String(_) => STRING_BIT,
            Value::Number(n) => {
                return self.0 & NUMBER_BIT != 0 || (self.0 & INTEGER_BIT != 0 && is_integer(n));
            }
        };
        self.0 & bit != 0
    }
}

impl fmt::Display for Types {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (i, name) in TYPE_NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                f.write_str(if first { "" } else { " or " })?;
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

fn is_integer(n: &Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

/// A JSON number compared exactly: integers stay integers, so large u64 bounds do not round.
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn of(n: &Number) -> Num {
        match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Num::Int(i.into()),
            (None, Some(u)) => Num::Int(u.into()),
            (None, None) => Num::Float(n.as_f64().unwrap_or(f64::NAN)),
        }
    }

    fn cmp(self, other: Num) -> Ordering {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            (Num::Int(a), Num::Float(b)) => cmp_int_float(a, b),
            (Num::Float(a), Num::Int(b)) => cmp_int_float(b, a).reverse(),
        }
    }

    /// The exact decimal value (see `decimal` for what "exact" means for a float).
    fn decimal(self) -> Option<Decimal> {
        match self {
            Num::Int(i) => Some(Decimal::of_int(i)),
            Num::Float(f) => Decimal::of_f64(f),
        }
    }
}

/// A `multipleOf` step: as written, for messages, and as a decimal, for the test.
#[derive(Clone, Copy, Debug)]
struct Step {
    shown: Num,
    divisor: Divisor,
}

fn cmp_int_float(i: i128, f: f64) -> Ordering {
    let floor = f.floor();
    // `as` saturates, so floats beyond i128 still order correctly.
    match i.cmp(&(floor as i128)) {
        Ordering::Equal if f > floor => Ordering::Less,
        other => other,
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Num::Int(i) => write!(f, "{i}"),
            // serde_json prints 1e300 as "1e300"; std would print 300 zeros.
            Num::Float(x) => match Number::from_f64(x) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "{x}"),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compiling

struct Compiler<'s> {
    root: &'s Value,
    nodes: Vec<Node>,
    /// Schema path of each node, for compile-time messages only.
    paths: Vec<String>,
    /// JSON pointer (escaped, as in `Node` paths) -> node of each `$ref` target and root
    /// definition, so each compiles once.
    defs: HashMap<String, usize>,
    /// Definitions referenced but not compiled yet: compiling them later breaks recursion.
    pending: VecDeque<(usize, &'s Value, String)>,
}

impl<'s> Compiler<'s> {
    fn reserve(&mut self, path: String) -> usize {
        self.nodes.push(Node::Any);
        self.paths.push(path);
        self.nodes.len() - 1
    }

    fn compile_child(&mut self, value: &'s Value, path: String) -> Result<usize, String> {
        match value {
            Value::Bool(true) => Ok(ANY),
            Value::Bool(false) => Ok(NEVER),
            _ => {
                let index = self.reserve(path.clone());
                self.compile_into(index, value, &path)?;
                Ok(index)
            }
        }
    }

    fn compile_into(&mut self, index: usize, value: &'s Value, path: &str) -> Result<(), String> {
        self.nodes[index] = match value {
            Value::Bool(true) => Node::Any,
            Value::Bool(false) => Node::Never,
            Value::Object(map) => self.compile_object(map, path, std::ptr::eq(value, self.root))?,
            other => {
                return Err(format!(
                    "a schema must be an object or a boolean, got {} at {}",
                    kind(other),
                    at(path)
                ))
            }
        };
        Ok(())
    }

    fn compile_object(
        &mut self,
        map: &'s Map<String, Value>,
        path: &str,
        is_root: bool,
    ) -> Result<Node, String> {
        let err = |message: String| format!("{message} at {}", at(path));
        let mut c = Checks::default();
        let mut constrained = false;
        for (key, v) in map {
            let key = key.as_str();
            let child = |name: &str| format!("{path}/{name}");
            if ANNOTATIONS.contains(&key) {
                continue;
            }
            constrained |= key != "$defs" && key != "definitions";
            match key {
                "type" => c.types = Types::parse(v).map_err(err)?,
                "properties" => {
                    let props = v
                        .as_object()
                        .ok_or_else(|| err("`properties` must be an object".into()))?;
                    for (name, s) in props {
                        let node =
                            self.compile_child(s, child(&format!("properties/{}", escape(name))))?;
                        c.properties.push(Prop {
                            name: name.as_str().into(),
                            node: Some(node),
                            required: false,
                        });
                    }
                }
                "required" => {
                    let names = v.as_array().filter(|a| a.iter().all(Value::is_string));
                    let names = names
                        .ok_or_else(|| err("`required` must be an array of strings".into()))?;
                    for name in names.iter().filter_map(Value::as_str) {
                        if !c.required.iter().any(|r| &**r == name) {
                            c.required.push(name.into());
                        }
                    }
                }
                "additionalProperties" => c.additional = Some(self.compile_child(v, child(key))?),
                "minProperties" => c.min_properties = Some(count(v, key).map_err(err)?),
                "maxProperties" => c.max_properties = Some(count(v, key).map_err(err)?),
                "items" if v.is_array() => {
                    return Err(err(
                        "`items` must be a schema; for tuples use `prefixItems` \
                        (JSON Schema 2020-12)"
                            .into(),
                    ))
                }
                "items" => c.items = Some(self.compile_child(v, child(key))?),
                "prefixItems" => c.prefix_items = self.compile_list(v, key, path)?,
                "minItems" => c.min_items = Some(count(v, key).map_err(err)?),
                "maxItems" => c.max_items = Some(count(v, key).map_err(err)?),
                "uniqueItems" => {
                    c.unique_items = v
                        .as_bool()
                        .ok_or_else(|| err("`uniqueItems` must be a boolean".into()))?
                }
                "minLength" => c.min_length = Some(count(v, key).map_err(err)?),
                "maxLength" => c.max_length = Some(count(v, key).map_err(err)?),
                "minimum" => c.minimum = Some(number(v, key).map_err(err)?),
                "maximum" => c.maximum = Some(number(v, key).map_err(err)?),
                "exclusiveMinimum" => c.exclusive_minimum = Some(number(v, key).map_err(err)?),
                "exclusiveMaximum" => c.exclusive_maximum = Some(number(v, key).map_err(err)?),
                "multipleOf" => {
                    let m = number(v, key).map_err(err)?;
                    let exact = m
                        .decimal()
                        .filter(|_| m.cmp(Num::Int(0)) == Ordering::Greater);
                    let exact =
                        exact.ok_or_else(|| err("`multipleOf` must be greater than 0".into()))?;
                    c.multiple_of = Some(Step {
                        shown: m,
                        divisor: Divisor::new(exact),
                    });
                }
                "enum" => {
                    let values = v
                        .as_array()
                        .ok_or_else(|| err("`enum` must be an array".into()))?;
                    c.enumeration = Some(values.clone());
                }
                "const" => c.constant = Some(v.clone()),
                "anyOf" => c.any_of = self.compile_list(v, key, path)?,
                "oneOf" => c.one_of = self.compile_list(v, key, path)?,
                "allOf" => c.all_of = self.compile_list(v, key, path)?,
                "not" => c.not = Some(self.compile_child(v, child(key))?),
                "$ref" => {
                    let target = v
                        .as_str()
                        .ok_or_else(|| err("`$ref` must be a string".into()))?;
                    c.reference = Some(self.resolve_ref(target).map_err(err)?);
                }
                "$defs" | "definitions" => {
                    let container = if key == "$defs" {
                        "$defs"
                    } else {
                        "definitions"
                    };
                    let defs = v
                        .as_object()
                        .ok_or_else(|| err(format!("`{key}` must be an object of schemas")))?;
                    for (name, def) in defs {
                        if is_root {
                            self.definition(format!("/{container}/{}", escape(name)), def);
                        } else {
                            // Unreachable by `$ref`, but still a schema the user wrote: check it.
                            self.compile_child(def, child(&format!("{key}/{}", escape(name))))?;
                        }
                    }
                }
                "pattern" => c.pattern = Some(pattern(v, "pattern").map_err(err)?),
                "patternProperties" => {
                    let patterns = v
                        .as_object()
                        .ok_or_else(|| err("`patternProperties` must be an object".into()))?;
                    for (source, s) in patterns {
                        let regex = pattern(&Value::String(source.clone()), key).map_err(err)?;
                        let at = child(&format!("patternProperties/{}", escape(source)));
                        c.pattern_properties
                            .push((regex, self.compile_child(s, at)?));
                    }
                }
                "propertyNames" => c.property_names = Some(self.compile_child(v, child(key))?),
                "$id" if is_root => {}
                "$id" => {
                    return Err(err(
                        "`$id` inside a subschema is not supported: it would change the base \
                         that the `$ref`s beneath it resolve against, and the engine resolves \
                         `$ref` against the root schema only; remove it, or move the subschema \
                         under the root `$defs` and refer to it as `#/$defs/<name>`"
                            .into(),
                    ))
                }
                "nullable" => {
                    return Err(err(
                        "unsupported keyword `nullable` (OpenAPI); use \
                        `\"anyOf\": [{...}, {\"type\": \"null\"}]` or a `type` array with \"null\""
                            .into(),
                    ))
                }
                other => {
                    return Err(err(format!(
                        "unsupported keyword `{other}`; the engine's validator supports \
                         {SUPPORTED}, and ignores the annotations {}",
                        ANNOTATIONS.join(", ")
                    )))
                }
            }
        }
        if !constrained {
            return Ok(Node::Any);
        }
        for name in &c.required {
            if let Some(p) = c.properties.iter_mut().find(|p| p.name == *name) {
                p.required = true;
            } else {
                c.properties.push(Prop {
                    name: name.clone(),
                    node: None,
                    required: true,
                });
            }
        }
        c.properties.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(Node::Check(Box::new(c)))
    }

    /// A non-empty array of subschemas (`anyOf`, `oneOf`, `allOf`, `prefixItems`).
    fn compile_list(
        &mut self,
        value: &'s Value,
        key: &str,
        path: &str,
    ) -> Result<Vec<usize>, String> {
        match value.as_array() {
            Some(list) if !list.is_empty() => list
                .iter()
                .enumerate()
                .map(|(i, s)| self.compile_child(s, format!("{path}/{key}/{i}")))
                .collect(),
            _ => Err(format!(
                "`{key}` must be a non-empty array of schemas at {}",
                at(path)
            )),
        }
    }

    /// The node of the subschema at `pointer` (escaped), reserving it on first use and
    /// compiling it later.
    fn definition(&mut self, pointer: String, def: &'s Value) -> usize {
        if let Some(&index) = self.defs.get(&pointer) {
            return index;
        }
        let index = self.reserve(pointer.clone());
        self.defs.insert(pointer.clone(), index);
        self.pending.push_back((index, def, pointer));
        index
    }

    /// A `$ref` is a URI reference whose fragment is a JSON pointer into the root schema:
    /// `#/$defs/Name`, `#/definitions/a~1b`, `#/$defs/My%20Model`, `#/properties/x/items`, or `#`.
    /// A reference with a base (`other.json#...`) is accepted only when the base is the root's
    /// own `$id`.
    fn resolve_ref(&mut self, target: &str) -> Result<usize, String> {
        let root_id = self.root.get("$id").and_then(Value::as_str);
        let fragment = match target.split_once('#') {
            Some(("", fragment)) => fragment,
            Some((base, fragment)) if Some(base) == root_id => fragment,
            _ => {
                return Err(format!(
                    "`$ref` target `{target}` is not supported; the engine resolves references \
                     inside this schema only, such as `#/$defs/<name>`"
                ))
            }
        };
        let pointer = percent_decode(fragment).ok_or_else(|| {
            format!("`$ref` target `{target}` has a malformed percent-escape or is not UTF-8")
        })?;
        if pointer.is_empty() {
            return Ok(ROOT_NODE);
        }
        if !pointer.starts_with('/') {
            return Err(format!(
                "`$ref` target `{target}` is a plain-name fragment (`$anchor`), which is not \
                 supported; use a JSON pointer such as `#/$defs/<name>`"
            ));
        }
        let (def, path) = subschema_at(self.root, &pointer)
            .map_err(|problem| format!("`$ref` target `{target}` {problem}"))?;
        if path.is_empty() {
            return Ok(ROOT_NODE);
        }
        Ok(self.definition(path, def))
    }

    /// Refuses schemas that reach themselves without descending into the value
    /// (`{"$defs": {"A": {"allOf": [{"$ref": "#/$defs/A"}]}}}`): validating them would never end.
    fn check_cycles(&self) -> Result<(), String> {
        let mut state = vec![Visit::New; self.nodes.len()];
        (0..self.nodes.len()).try_for_each(|i| self.visit(i, &mut state))
    }

    fn visit(&self, index: usize, state: &mut [Visit]) -> Result<(), String> {
        match state[index] {
            Visit::Done => return Ok(()),
            Visit::Open => {
                return Err(format!(
                    "the schema at {} refers back to itself through `$ref`, `allOf`, `anyOf`, \
                     `oneOf` or `not` without descending into a property or item, so validation \
                     would never end",
                    at(&self.paths[index])
                ))
            }
            Visit::New => {}
        }
        state[index] = Visit::Open;
        if let Node::Check(c) = &self.nodes[index] {
            c.same_value_edges()
                .try_for_each(|next| self.visit(next, state))?;
        }
        state[index] = Visit::Done;
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Visit {
    New,
    Open,
    Done,
}

fn count(value: &Value, key: &str) -> Result<usize, String> {
    let n = value.as_u64().or_else(|| {
        let f = value.as_f64()?;
        (f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64).then_some(f as u64)
    });
    n.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .ok_or_else(|| format!("`{key}` must be a non-negative integer"))
}

fn number(value: &Value, key: &str) -> Result<Num, String> {
    match value {
        Value::Number(n) => Ok(Num::of(n)),
        Value::Bool(_) if key.starts_with("exclusive") => Err(format!(
            "`{key}` must be a number (JSON Schema 2020-12); the boolean form of draft 4 is not \
             supported"
        )),
        _ => Err(format!("`{key}` must be a number")),
    }
}

fn pattern(value: &Value, keyword: &str) -> Result<Pattern, String> {
    let source = value
        .as_str()
        .ok_or_else(|| format!("`{keyword}` must be a string"))?;
    Pattern::compile(source).map_err(|reason| {
        format!(
            "the `{keyword}` regular expression {} cannot be enforced as ECMA-262 (JSON Schema's \
             dialect): {reason}",
            show(value)
        )
    })
}

/// Keywords whose value is a schema, or a map or list of schemas: the only places a `$ref`
/// pointer may pass through, so a reference cannot land on a `const` value or an `enum` item.
const SCHEMA_AT_KEY: [&str; 4] = ["items", "additionalProperties", "not", "propertyNames"];
const SCHEMAS_BY_NAME: [&str; 4] = ["properties", "patternProperties", "$defs", "definitions"];
const SCHEMAS_BY_INDEX: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];

/// The subschema at a JSON pointer (unescaped `~0`/`~1` here) and its canonical escaped path.
fn subschema_at<'s>(root: &'s Value, pointer: &str) -> Result<(&'s Value, String), String> {
    let mut segments = pointer.split('/').skip(1).map(|raw| {
        if raw.replace("~0", "").replace("~1", "").contains('~') {
            Err(format!(
                "has `~` not followed by 0 or 1 in the segment `{raw}`"
            ))
        } else {
            Ok(raw.replace("~1", "/").replace("~0", "~"))
        }
    });
    let mut here = root;
    let mut path = String::new();
    while let Some(keyword) = segments.next() {
        let keyword = keyword?;
        let missing =
            |path: &str| format!("does not exist in the schema (nothing at {})", at(path));
        let inner = here.get(&keyword);
        path.push('/');
        path.push_str(&escape(&keyword));
        let inner = inner.ok_or_else(|| missing(&path))?;
        here = if SCHEMA_AT_KEY.contains(&keyword.as_str()) {
            inner
        } else if SCHEMAS_BY_NAME.contains(&keyword.as_str())
            || SCHEMAS_BY_INDEX.contains(&keyword.as_str())
        {
            let name = segments.next().transpose()?.ok_or_else(|| {
                format!("points at `{keyword}` itself, not at a schema inside it")
            })?;
            path.push('/');
            path.push_str(&escape(&name));
            let item = if SCHEMAS_BY_NAME.contains(&keyword.as_str()) {
                inner.as_object().and_then(|m| m.get(&name))
            } else {
                let index = name
                    .parse::<usize>()
                    .ok()
                    .filter(|_| name == "0" || !name.starts_with('0'));
                inner
                    .as_array()
                    .zip(index)
                    .and_then(|(list, i)| list.get(i))
            };
            item.ok_or_else(|| missing(&path))?
        } else {
            return Err(format!(
                "does not point at a schema: `{keyword}` at {} is not a keyword that holds \
                 schemas",
                at(&path[..path.len() - escape(&keyword).len() - 1])
            ));
        };
    }
    Ok((here, path))
}

/// Decodes `%XX` escapes (RFC 3986) into UTF-8 text; None when malformed.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes a name for a JSON pointer segment.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// How a path reads in a message: the pointer itself, or "(root)".
fn at(path: &str) -> &str {
    if path.is_empty() {
        "(root)"
    } else {
        path
    }
}

// ---------------------------------------------------------------------------------------------
// Validating

/// Where violations go. A fast sink only answers yes or no, so `anyOf` branches and `not` are
/// tried without building messages; nothing is allocated until something fails.
struct Sink {
    collect: bool,
    errors: Vec<Violation>,
    /// Set once a pattern match gave up at the backtracking limit: nothing is decided after
    /// that, so checking stops and the value is refused (see `Schema::validate`).
    gave_up: Option<Violation>,
}

impl Sink {
    fn fast() -> Sink {
        Sink {
            collect: false,
            errors: Vec::new(),
            gave_up: None,
        }
    }

    fn collecting() -> Sink {
        Sink {
            collect: true,
            errors: Vec::new(),
            gave_up: None,
        }
    }

    /// Takes over a trial sink's give-up, so it reaches `validate` from under `not` or `anyOf`.
    fn absorb(&mut self, trial: Sink) -> Vec<Violation> {
        if self.gave_up.is_none() {
            self.gave_up = trial.gave_up;
        }
        trial.errors
    }

    fn give_up(&mut self, path: &Path, pattern: &Pattern, subject: &str) {
        let violation = Violation {
            path: path.render(),
            message: format!(
                "gave up matching {subject} against the pattern {} after {} backtracking steps, so \
                 the value is refused; the pattern backtracks too much on it (nested quantifiers \
                 around a backreference or lookaround usually do this)",
                show(&Value::String(pattern.source().to_string())),
                ecma::BACKTRACK_LIMIT
            ),
        };
        if self.collect && self.errors.len() < MAX_VIOLATIONS {
            self.errors.push(violation.clone());
        }
        self.gave_up.get_or_insert(violation);
    }

    fn fail(&mut self, path: &Path, message: impl FnOnce() -> String) {
        if self.collect && self.errors.len() < MAX_VIOLATIONS {
            self.errors.push(Violation {
                path: path.render(),
                message: message(),
            });
        }
    }

    /// True once nothing more would be recorded, so the caller can stop early.
    fn done(&self) -> bool {
        !self.collect || self.errors.len() >= MAX_VIOLATIONS || self.gave_up.is_some()
    }
}

/// The value path as a stack-allocated linked list: rendered only when a violation is recorded.
struct Path<'a> {
    segment: Segment<'a>,
    parent: Option<&'a Path<'a>>,
    depth: usize,
}

enum Segment<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        segment: Segment::Root,
        parent: None,
        depth: 0,
    };

    fn child(&'a self, segment: Segment<'a>) -> Path<'a> {
        Path {
            segment,
            parent: Some(self),
            depth: self.depth + 1,
        }
    }

    fn render(&self) -> String {
        let mut segments = Vec::with_capacity(self.depth);
        let mut at = Some(self);
        while let Some(p) = at {
            segments.push(&p.segment);
            at = p.parent;
        }
        let mut out = String::new();
        for segment in segments.iter().rev() {
            match segment {
                Segment::Root => {}
                Segment::Key(k) => {
                    out.push('/');
                    out.push_str(&escape(k));
                }
                Segment::Index(i) => {
                    out.push('/');
                    out.push_str(&i.to_string());
                }
            }
        }
        out
    }
}

/// Records a violation and returns false from the enclosing check once the sink is done.
macro_rules! fail {
    ($ok:ident, $sink:expr, $path:expr, $($message:tt)*) => {{
        $ok = false;
        $sink.fail($path, || format!($($message)*));
        if $sink.done() {
            return false;
        }
    }};
}

/// Runs a sub-check; on failure marks the result and returns early once the sink is done.
macro_rules! sub {
    ($ok:ident, $sink:expr, $check:expr) => {{
        if !$check {
            $ok = false;
            if $sink.done() {
                return false;
            }
        }
    }};
}

impl Schema {
    /// Validates `value` against node `index`. Returns false exactly when the value fails; a
    /// collecting sink then holds at least one violation.
    fn check(&self, index: usize, value: &Value, path: &Path, sink: &mut Sink) -> bool {
        let c = match &self.nodes[index] {
            Node::Any => return true,
            Node::Never => {
                sink.fail(path, || {
                    "no value is allowed here (the schema is `false`)".into()
                });
                return false;
            }
            Node::Check(c) => c,
        };
        if path.depth > MAX_DEPTH {
            sink.fail(path, || {
                format!("value is nested deeper than {MAX_DEPTH} levels")
            });
            return false;
        }
        if !c.types.is_any() && !c.types.matches(value) {
            // The other keywords would only repeat the same mistake.
            sink.fail(path, || {
                format!("expected {}, got {}", c.types, show_kind(value))
            });
            return false;
        }
        let mut ok = match value {
            Value::Object(map) => self.check_object(c, map, path, sink),
            Value::Array(items) => self.check_array(c, items, path, sink),
            Value::String(s) => check_string(c, s, path, sink),
            Value::Number(n) => check_number(c, n, path, sink),
            Value::Null | Value::Bool(_) => true,
        };
        if !ok && sink.done() {
            return false;
        }
        if let Some(k) = &c.constant {
            if !json_eq(k, value) {
                fail!(ok, sink, path, "expected {}, got {}", show(k), show(value));
            }
        }
        if let Some(options) = &c.enumeration {
            if !options.iter().any(|o| json_eq(o, value)) {
                fail!(
                    ok,
                    sink,
                    path,
                    "expected one of {}, got {}",
                    show_list(options),
                    show(value)
                );
            }
        }
        if let Some(r) = c.reference {
            sub!(ok, sink, self.check(r, value, path, sink));
        }
        for &s in &c.all_of {
            sub!(ok, sink, self.check(s, value, path, sink));
        }
        if !c.any_of.is_empty() {
            sub!(
                ok,
                sink,
                self.check_alternatives(&c.any_of, "anyOf", value, path, sink)
            );
        }
        if !c.one_of.is_empty() {
            sub!(
                ok,
                sink,
                self.check_alternatives(&c.one_of, "oneOf", value, path, sink)
            );
        }
        if let Some(n) = c.not {
            if self.passes(n, value, path, sink) {
                fail!(ok, sink, path, "must not match the schema under `not`");
            }
            if sink.gave_up.is_some() {
                return false;
            }
        }
        ok
    }

    fn check_object(
        &self,
        c: &Checks,
        map: &Map<String, Value>,
        path: &Path,
        sink: &mut Sink,
    ) -> bool {
        let mut ok = true;
        let mut required_seen = 0;
        let keyed = !c.properties.is_empty()
            || c.additional.is_some()
            || !c.pattern_properties.is_empty()
            || c.property_names.is_some();
        if keyed {
            for (key, item) in map {
                if let Some(names) = c.property_names {
                    sub!(ok, sink, self.check_name(names, key, path, sink));
                }
                let declared = match c.properties.binary_search_by(|p| (*p.name).cmp(key)) {
                    Ok(i) => {
                        required_seen += usize::from(c.properties[i].required);
                        c.properties[i].node
                    }
                    Err(_) => None,
                };
                let at = path.child(Segment::Key(key));
                if let Some(node) = declared {
                    sub!(ok, sink, self.check(node, item, &at, sink));
                }
                let mut matched = declared.is_some();
                for (pattern, node) in &c.pattern_properties {
                    match pattern.is_match(key) {
                        Ok(false) => continue,
                        Ok(true) => matched = true,
                        Err(GaveUp) => {
                            sink.give_up(path, pattern, &format!("the property name `{key}`"));
                            return false;
                        }
                    }
                    sub!(ok, sink, self.check(*node, item, &at, sink));
                }
                match c.additional {
                    Some(NEVER) if !matched => {
                        fail!(
                            ok,
                            sink,
                            path,
                            "unexpected property `{key}`; {}",
                            allowed(c)
                        );
                    }
                    Some(node) if !matched => sub!(ok, sink, self.check(node, item, &at, sink)),
                    _ => {}
                }
            }
        }
        if required_seen < c.required.len() {
            for name in &c.required {
                if !map.contains_key(&**name) {
                    fail!(ok, sink, path, "missing required property `{name}`");
                }
            }
        }
        let (min, max) = (c.min_properties, c.max_properties);
        sub!(
            ok,
            sink,
            check_count(map.len(), min, max, PROPERTIES, path, sink)
        );
        ok
    }

    /// `propertyNames`: the key is checked as a string value; its violations are reported at
    /// the object, saying which name failed.
    fn check_name(&self, names: usize, key: &str, path: &Path, sink: &mut Sink) -> bool {
        let name = Value::String(key.to_owned());
        if !sink.collect {
            return self.check(names, &name, path, sink);
        }
        let mut trial = Sink::collecting();
        let passed = self.check(names, &name, path, &mut trial);
        for v in sink.absorb(trial) {
            if sink.errors.len() >= MAX_VIOLATIONS {
                break;
            }
            sink.errors.push(Violation {
                path: v.path,
                message: format!("property name {}: {}", show(&name), v.message),
            });
        }
        passed
    }

    fn check_array(&self, c: &Checks, items: &[Value], path: &Path, sink: &mut Sink) -> bool {
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let node = match c.prefix_items.get(i).copied().or(c.items) {
                Some(node) => node,
                None => break,
            };
            if node == NEVER && i >= c.prefix_items.len() {
                let max = Some(c.prefix_items.len());
                sub!(
                    ok,
                    sink,
                    check_count(items.len(), None, max, ITEMS, path, sink)
                );
                break;
            }
            sub!(
                ok,
                sink,
                self.check(node, item, &path.child(Segment::Index(i)), sink)
            );
        }
        let (min, max) = (c.min_items, c.max_items);
        sub!(
            ok,
            sink,
            check_count(items.len(), min, max, ITEMS, path, sink)
        );
        if c.unique_items {
            if let Some((a, b)) = first_duplicate(items) {
                fail!(
                    ok,
                    sink,
                    path,
                    "items {a} and {b} are equal, but items must be unique"
                );
            }
        }
        ok
    }

    /// Whether `value` passes node `index`, asked without building messages; a give-up inside
    /// is carried over to `sink`.
    fn passes(&self, index: usize, value: &Value, path: &Path, sink: &mut Sink) -> bool {
        let mut trial = Sink::fast();
        let passed = self.check(index, value, path, &mut trial);
        sink.absorb(trial);
        passed
    }

    /// `anyOf` (exactly: at least one) and `oneOf` (exactly one). Branches are first tried with
    /// a fast sink; messages are built only when none matches.
    fn check_alternatives(
        &self,
        branches: &[usize],
        keyword: &str,
        value: &Value,
        path: &Path,
        sink: &mut Sink,
    ) -> bool {
        let one = keyword == "oneOf";
        let mut matched: [usize; 2] = [0; 2];
        let mut matches = 0;
        for (i, &b) in branches.iter().enumerate() {
            let passed = self.passes(b, value, path, sink);
            if sink.gave_up.is_some() {
                return false;
            }
            if passed {
                if !one {
                    return true;
                }
                if matches < 2 {
                    matched[matches] = i;
                }
                matches += 1;
                if matches == 2 && !sink.collect {
                    return false;
                }
            }
        }
        match matches {
            1 => return true,
            0 => {}
            n => {
                sink.fail(path, || {
                    format!(
                        "matches {n} alternatives in `oneOf` (alternatives {} and {}) but must match \
                         exactly one",
                        matched[0], matched[1]
                    )
                });
                return false;
            }
        }
        if !sink.collect {
            return false;
        }
        // Explain with the branches the value could plausibly have meant: for Optional[Model]
        // and an object, that is the model, whose own violations are the useful ones.
        let plausible: Vec<usize> = branches
            .iter()
            .enumerate()
            .filter(|&(_, &b)| self.could_match(b, value))
            .map(|(i, _)| i)
            .collect();
        match plausible.as_slice() {
            [] => {
                sink.fail(path, || match self.expected_any(branches) {
                    Some(e) => format!("expected {}, got {}", e.join(" or "), show_kind(value)),
                    None => format!(
                        "matches none of the {} alternatives in `{keyword}`, got {}",
                        branches.len(),
                        show_kind(value)
                    ),
                });
            }
            [only] => {
                self.check(branches[*only], value, path, sink);
            }
            several => {
                let mut closest: Option<(usize, Vec<Violation>)> = None;
                for &i in several {
                    let mut trial = Sink::collecting();
                    self.check(branches[i], value, path, &mut trial);
                    let errors = sink.absorb(trial);
                    if closest.as_ref().is_none_or(|(_, e)| errors.len() < e.len()) {
                        closest = Some((i, errors));
                    }
                }
                if let Some((i, errors)) = closest {
                    sink.fail(path, || {
                        format!(
                            "matches none of the {} alternatives in `{keyword}`; the closest is \
                             alternative {i}, which fails as follows",
                            branches.len()
                        )
                    });
                    for e in errors {
                        if sink.done() {
                            break;
                        }
                        sink.errors.push(e);
                    }
                }
            }
        }
        false
    }

    /// Whether `value` is of a kind the node could accept at all, judged by `type`, `const` and
    /// `enum` only. Used to pick which `anyOf` branches to explain.
    fn could_match(&self, index: usize, value: &Value) -> bool {
        let c = match &self.nodes[index] {
            Node::Any => return true,
            Node::Never => return false,
            Node::Check(c) => c,
        };
        let same_kind = |k: &Value| std::mem::discriminant(k) == std::mem::discriminant(value);
        (c.types.is_any() || c.types.matches(value))
            && c.constant.as_ref().is_none_or(same_kind)
            && c.enumeration
                .as_ref()
                .is_none_or(|e| e.iter().any(same_kind))
            && c.reference.is_none_or(|r| self.could_match(r, value))
            && c.all_of.iter().all(|&s| self.could_match(s, value))
            && (c.any_of.is_empty() || c.any_of.iter().any(|&s| self.could_match(s, value)))
            && (c.one_of.is_empty() || c.one_of.iter().any(|&s| self.could_match(s, value)))
    }

    /// What any of the branches accepts, each said once (two models behind `$ref` both read
    /// "object"), when every branch can be described.
    fn expected_any(&self, branches: &[usize]) -> Option<Vec<String>> {
        let mut described: Vec<String> = Vec::with_capacity(branches.len());
        for &b in branches {
            let e = self.expected(b)?;
            if !described.contains(&e) {
                described.push(e);
            }
        }
        Some(described)
    }

    /// A short description of what a node accepts ("integer", "\"web\"", "one of 1, 2"), when
    /// there is one.
    fn expected(&self, index: usize) -> Option<String> {
        let c = match &self.nodes[index] {
            Node::Check(c) => c,
            _ => return None,
        };
        if let Some(k) = &c.constant {
            Some(show(k))
        } else if let Some(options) = &c.enumeration {
            Some(format!("one of {}", show_list(options)))
        } else if !c.types.is_any() {
            Some(c.types.to_string())
        } else {
            self.expected(c.reference?)
        }
    }
}

fn check_string(c: &Checks, s: &str, path: &Path, sink: &mut Sink) -> bool {
    let mut ok = true;
    if c.min_length.is_some() || c.max_length.is_some() {
        // JSON Schema counts characters (code points), not bytes.
        let len = s.chars().count();
        sub!(
            ok,
            sink,
            check_count(len, c.min_length, c.max_length, CHARACTERS, path, sink)
        );
    }
    if let Some(pattern) = &c.pattern {
        match pattern.is_match(s) {
            Ok(true) => {}
            Ok(false) => fail!(
                ok,
                sink,
                path,
                "expected a string matching the pattern {}, got {}",
                show(&Value::String(pattern.source().to_owned())),
                show(&Value::String(s.to_owned()))
            ),
            Err(GaveUp) => {
                sink.give_up(path, pattern, "the string");
                return false;
            }
        }
    }
    ok
}

/// The shared bound check of `minLength`/`maxLength`, `minItems`/`maxItems` and
/// `minProperties`/`maxProperties`.
fn check_count(
    len: usize,
    min: Option<usize>,
    max: Option<usize>,
    noun: Noun,
    path: &Path,
    sink: &mut Sink,
) -> bool {
    let mut ok = true;
    if let Some(min) = min.filter(|&min| len < min) {
        fail!(
            ok,
            sink,
            path,
            "expected at least {min} {}, got {len}",
            noun.of(min)
        );
    }
    if let Some(max) = max.filter(|&max| len > max) {
        fail!(
            ok,
            sink,
            path,
            "expected at most {max} {}, got {len}",
            noun.of(max)
        );
    }
    ok
}

/// A noun with its plural, for "expected at least 1 item" / "at least 2 items".
#[derive(Clone, Copy)]
struct Noun(&'static str, &'static str);

const CHARACTERS: Noun = Noun("character", "characters");
const ITEMS: Noun = Noun("item", "items");
const PROPERTIES: Noun = Noun("property", "properties");

impl Noun {
    fn of(self, n: usize) -> &'static str {
        if n == 1 {
            self.0
        } else {
            self.1
        }
    }
}

fn check_number(c: &Checks, n: &Number, path: &Path, sink: &mut Sink) -> bool {
    let mut ok = true;
    let x = Num::of(n);
    if let Some(min) = c.minimum.filter(|&m| x.cmp(m) == Ordering::Less) {
        fail!(ok, sink, path, "expected a number >= {min}, got {n}");
    }
    if let Some(max) = c.maximum.filter(|&m| x.cmp(m) == Ordering::Greater) {
        fail!(ok, sink, path, "expected a number <= {max}, got {n}");
    }
    if let Some(min) = c
        .exclusive_minimum
        .filter(|&m| x.cmp(m) != Ordering::Greater)
    {
        fail!(ok, sink, path, "expected a number > {min}, got {n}");
    }
    if let Some(max) = c.exclusive_maximum.filter(|&m| x.cmp(m) != Ordering::Less) {
        fail!(ok, sink, path, "expected a number < {max}, got {n}");
    }
    if let Some(step) = c.multiple_of {
        let divides = match x {
            Num::Int(i) => step.divisor.divides_int(i),
            Num::Float(f) => step.divisor.divides_f64(f),
        };
        if !divides {
            fail!(
                ok,
                sink,
                path,
                "expected a multiple of {}, got {n}",
                step.shown
            );
        }
    }
    ok
}

/// JSON equality as JSON Schema defines it: 1 equals 1.0, object key order does not matter.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Num::of(x).cmp(Num::of(y)) == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A total order consistent with `json_eq`, so long arrays are checked for duplicates by sorting.
fn json_cmp(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_unstable_by(|x, y| x.0.cmp(y.0));
        entries
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => Num::of(x).cmp(Num::of(y)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| json_cmp(p, q))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => x.len().cmp(&y.len()).then_with(|| {
            sorted(x)
                .into_iter()
                .zip(sorted(y))
                .map(|((k, v), (l, w))| k.cmp(l).then_with(|| json_cmp(v, w)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        }),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// The first pair of equal items, lower index first.
fn first_duplicate(items: &[Value]) -> Option<(usize, usize)> {
    if items.len() <= PAIRWISE_UNIQUE_LIMIT {
        return (0..items.len()).find_map(|i| {
            (i + 1..items.len())
                .find(|&j| json_eq(&items[i], &items[j]))
                .map(|j| (i, j))
        });
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&i, &j| json_cmp(&items[i], &items[j]).then(i.cmp(&j)));
    order
        .windows(2)
        .filter(|w| json_cmp(&items[w[0]], &items[w[1]]).is_eq())
        .map(|w| (w[0], w[1]))
        .min()
}

fn allowed(c: &Checks) -> String {
    let names: Vec<String> = c
        .properties
        .iter()
        .filter(|p| p.node.is_some())
        .map(|p| format!("`{}`", p.name))
        .chain(c.pattern_properties.iter().map(|(p, _)| {
            format!(
                "names matching {}",
                show(&Value::String(p.source().to_owned()))
            )
        }))
        .collect();
    if names.is_empty() {
        "no properties are allowed".to_string()
    } else {
        format!("allowed: {}", names.join(", "))
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The value as short JSON, cut so a long argument does not swamp the message.
fn show(value: &Value) -> String {
    const LIMIT: usize = 40;
    let text = value.to_string();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The kind of a value, with the value itself for scalars: `string "abc"`, `integer 3`, `null`.
fn show_kind(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Array(_) | Value::Object(_) => kind(value).to_string(),
        _ => format!("{} {}", kind(value), show(value)),
    }
}

fn show_list(values: &[Value]) -> String {
    const LIMIT: usize = 10;
    let mut shown: Vec<String> = values.iter().take(LIMIT).map(show).collect();
    if values.len() > LIMIT {
        shown.push(format!("… ({} in all)", values.len()));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(schema: Value) -> Schema {
        Schema::compile(&schema).unwrap_or_else(|e| panic!("schema should compile: {e}"))
    }

    fn compile_err(schema: Value) -> String {
        Schema::compile(&schema).expect_err("schema should be refused")
    }

    fn errors(schema: &Schema, value: Value) -> Vec<Violation> {
        schema
            .validate(&value)
            .expect_err("value should be refused")
    }

    /// The violations as "path: message" lines, for compact assertions.
    fn lines(schema: &Schema, value: Value) -> Vec<String> {
        errors(schema, value)
            .iter()
            .map(|v| format!("{}: {}", v.path, v.message))
            .collect()
    }

    fn accepts(schema: &Schema, values: &[Value]) {
        for v in values {
            assert_eq!(schema.validate(v), Ok(()), "should accept {v}");
        }
    }

    fn refuses(schema: &Schema, values: &[Value]) {
        for v in values {
            assert!(schema.validate(v).is_err(), "should refuse {v}");
        }
    }

    #[test]
    fn schema_type_keyword_accepts_and_refuses() {
        let cases = [
            ("null", json!(null), json!(0)),
            ("boolean", json!(true), json!("true")),
            ("object", json!({}), json!([])),
            ("array", json!([1]), json!({})),
            ("number", json!(1.5), json!("1.5")),
            ("string", json!("s"), json!(null)),
            ("integer", json!(3), json!(3.5)),
        ];
        for (name, good, bad) in cases {
            let s = compile(json!({"type": name}));
            accepts(&s, &[good]);
            refuses(&s, &[bad]);
        }
        let integer = compile(json!({"type": "integer"}));
        accepts(
            &integer,
            &[
                json!(3),
                json!(3.0),
                json!(-7),
                json!(u64::MAX),
                json!(1e20),
            ],
        );
        refuses(&integer, &[json!(0.1), json!(true)]);
        let number = compile(json!({"type": "number"}));
        accepts(&number, &[json!(3), json!(-2.5)]);
        let either = compile(json!({"type": ["string", "null"]}));
        accepts(&either, &[json!("x"), json!(null)]);
        assert_eq!(
            lines(&either, json!(4)),
            [": expected string or null, got integer 4"]
        );
    }

    #[test]
    fn schema_true_false_and_empty() {
        let anything = [
            json!(null),
            json!(1),
            json!("s"),
            json!([1, {}]),
            json!({"a": 1}),
        ];
        accepts(&compile(json!(true)), &anything);
        accepts(&compile(json!({})), &anything);
        accepts(
            &compile(json!({"title": "T", "description": "d", "format": "uuid"})),
            &anything,
        );
        refuses(&compile(json!(false)), &anything);
        assert_eq!(
            lines(&compile(json!(false)), json!(1)),
            [": no value is allowed here (the schema is `false`)"]
        );
    }

    #[test]
    fn schema_object_keywords() {
        let s = compile(json!({
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query"],
            "additionalProperties": false
        }));
        accepts(
            &s,
            &[json!({"query": "q"}), json!({"query": "q", "limit": 5})],
        );
        assert_eq!(
            lines(&s, json!({"limit": "5", "extra": 1})),
            [
                "/limit: expected integer, got string \"5\"",
                ": unexpected property `extra`; allowed: `limit`, `query`",
                ": missing required property `query`",
            ]
        );

        let open = compile(json!({"properties": {"a": {"type": "integer"}}}));
        accepts(
            &open,
            &[json!({"b": "anything"}), json!({}), json!("not an object")],
        );

        let typed_extra = compile(json!({
            "properties": {"a": {}},
            "additionalProperties": {"type": "number"}
        }));
        accepts(&typed_extra, &[json!({"a": "x", "b": 1.5})]);
        assert_eq!(
            lines(&typed_extra, json!({"b": "x"})),
            ["/b: expected number, got string \"x\""]
        );

        // A name that is only `required` is still an additional property.
        let strict = compile(json!({"required": ["a"], "additionalProperties": false}));
        refuses(&strict, &[json!({"a": 1}), json!({})]);

        let sized = compile(json!({"minProperties": 1, "maxProperties": 2}));
        accepts(&sized, &[json!({"a": 1}), json!({"a": 1, "b": 2})]);
        assert_eq!(
            lines(&sized, json!({})),
            [": expected at least 1 property, got 0"]
        );
        assert_eq!(
            lines(&sized, json!({"a": 1, "b": 2, "c": 3})),
            [": expected at most 2 properties, got 3"]
        );
    }

    #[test]
    fn schema_enum_and_const() {
        let e = compile(json!({"enum": ["web", "phone", 1, null, {"a": [1]}]}));
        accepts(
            &e,
            &[json!("web"), json!(1.0), json!(null), json!({"a": [1.0]})],
        );
        assert_eq!(
            lines(&e, json!("fax")),
            [": expected one of \"web\", \"phone\", 1, null, {\"a\":[1]}, got \"fax\""]
        );
        let k = compile(json!({"const": {"x": 1, "y": 2}}));
        accepts(&k, &[json!({"y": 2, "x": 1})]);
        refuses(&k, &[json!({"x": 1}), json!({"x": 1, "y": 3})]);
        assert_eq!(
            lines(&compile(json!({"const": 3})), json!(4)),
            [": expected 3, got 4"]
        );
        let long: Vec<Value> = (0..15).map(|i| json!(i)).collect();
        let message = &errors(&compile(json!({"enum": long})), json!(99))[0].message;
        assert!(message.contains("… (15 in all)"), "{message}");
    }

    #[test]
    fn schema_array_keywords() {
        let s = compile(json!({"items": {"type": "integer"}, "minItems": 1, "maxItems": 3}));
        accepts(&s, &[json!([1]), json!([1, 2, 3])]);
        assert_eq!(lines(&s, json!([])), [": expected at least 1 item, got 0"]);
        assert_eq!(
            lines(&s, json!([1, 2, 3, 4])),
            [": expected at most 3 items, got 4"]
        );
        assert_eq!(
            lines(&s, json!([1, "x", 2.5])),
            [
                "/1: expected integer, got string \"x\"",
                "/2: expected integer, got number 2.5"
            ]
        );

        let tuple = compile(json!({"prefixItems": [{"type": "string"}, {"type": "number"}]}));
        accepts(
            &tuple,
            &[
                json!(["a", 1]),
                json!(["a"]),
                json!(["a", 1, {"extra": true}]),
            ],
        );
        refuses(&tuple, &[json!([1, "a"])]);
        let closed = compile(json!({"prefixItems": [{"type": "string"}], "items": false}));
        accepts(&closed, &[json!(["a"])]);
        assert_eq!(
            lines(&closed, json!(["a", "b"])),
            [": expected at most 1 item, got 2"]
        );
        let rest =
            compile(json!({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}));
        accepts(&rest, &[json!(["a", 1, 2])]);
        assert_eq!(
            lines(&rest, json!(["a", 1, "b"])),
            ["/2: expected integer, got string \"b\""]
        );

        let unique = compile(json!({"uniqueItems": true}));
        accepts(&unique, &[json!([1, 2, "1", [1], {"a": 1}, {"a": 2}])]);
        assert_eq!(
            lines(&unique, json!([1, 2, 1.0])),
            [": items 0 and 2 are equal, but items must be unique"]
        );
        let mut many: Vec<Value> = (0..40).map(|i| json!({"id": i})).collect();
        accepts(&unique, &[Value::Array(many.clone())]);
        many.push(json!({"id": 7.0}));
        many.push(json!({"id": 3}));
        assert_eq!(
            lines(&unique, Value::Array(many)),
            [": items 3 and 41 are equal, but items must be unique"]
        );
        accepts(&compile(json!({"uniqueItems": false})), &[json!([1, 1])]);
    }

    #[test]
    fn schema_string_lengths_count_characters() {
        let s = compile(json!({"minLength": 2, "maxLength": 5}));
        accepts(
            &s,
            &[json!("ab"), json!("héllo"), json!("🦀🦀"), json!(12345678)],
        );
        assert_eq!(
            lines(&s, json!("a")),
            [": expected at least 2 characters, got 1"]
        );
        assert_eq!(
            lines(&s, json!("héllo!")),
            [": expected at most 5 characters, got 6"]
        );
        assert_eq!(
            lines(&compile(json!({"minLength": 1})), json!("")),
            [": expected at least 1 character, got 0"]
        );
    }

    #[test]
    fn schema_numeric_bounds() {
        let s = compile(json!({"minimum": 1, "maximum": 10}));
        accepts(
            &s,
            &[json!(1), json!(10), json!(5.5), json!(10.0), json!("x")],
        );
        assert_eq!(lines(&s, json!(0)), [": expected a number >= 1, got 0"]);
        assert_eq!(
            lines(&s, json!(10.5)),
            [": expected a number <= 10, got 10.5"]
        );
        let ex = compile(json!({"exclusiveMinimum": 0, "exclusiveMaximum": 1.5}));
        accepts(&ex, &[json!(0.001), json!(1)]);
        assert_eq!(lines(&ex, json!(0)), [": expected a number > 0, got 0"]);
        assert_eq!(
            lines(&ex, json!(1.5)),
            [": expected a number < 1.5, got 1.5"]
        );
        // Large integers are compared exactly, not through f64.
        let big = compile(json!({"maximum": 9007199254740992u64}));
        accepts(
            &big,
            &[json!(9007199254740992u64), json!(9.007199254740992e15)],
        );
        refuses(&big, &[json!(9007199254740993u64)]);
        let max = compile(json!({"exclusiveMaximum": u64::MAX}));
        refuses(&max, &[json!(u64::MAX), json!(1e20)]);
        accepts(&max, &[json!(u64::MAX - 1), json!(i64::MIN)]);
        let huge = compile(json!({"minimum": -1e300, "maximum": 1e300}));
        accepts(&huge, &[json!(u64::MAX), json!(i64::MIN)]);
        refuses(&compile(json!({"minimum": 1e300})), &[json!(u64::MAX)]);
    }

    #[test]
    fn schema_multiple_of() {
        let s = compile(json!({"multipleOf": 3}));
        accepts(&s, &[json!(0), json!(9), json!(-6), json!(12.0)]);
        assert_eq!(lines(&s, json!(10)), [": expected a multiple of 3, got 10"]);
        refuses(&s, &[json!(4.5)]);
        let tenth = compile(json!({"multipleOf": 0.1}));
        accepts(&tenth, &[json!(0.3), json!(1.7), json!(5)]);
        refuses(&tenth, &[json!(0.35)]);
        let half = compile(json!({"multipleOf": 0.5}));
        accepts(&half, &[json!(2), json!(2.5)]);
        assert_eq!(
            lines(&half, json!(0.7)),
            [": expected a multiple of 0.5, got 0.7"]
        );
    }

    #[test]
    fn schema_any_of_explains_the_plausible_branch() {
        let optional =
            compile(json!({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]}));
        accepts(&optional, &[json!(1), json!(null)]);
        assert_eq!(
            lines(&optional, json!("x")),
            [": expected integer or null, got string \"x\""]
        );
        assert_eq!(
            lines(&optional, json!(0)),
            [": expected a number >= 1, got 0"]
        );

        let literals = compile(json!({"anyOf": [{"const": "a"}, {"enum": [1, 2]}]}));
        assert_eq!(
            lines(&literals, json!(true)),
            [": expected \"a\" or one of 1, 2, got boolean true"]
        );
        let untyped =
            compile(json!({"anyOf": [{"minLength": 3}, {"type": "number", "maximum": 1}]}));
        accepts(&untyped, &[json!("abc"), json!(1), json!(null)]);
        assert_eq!(
            lines(&untyped, json!("ab")),
            [": expected at least 3 characters, got 2"]
        );
    }

    #[test]
    fn schema_one_of_all_of_not() {
        let one = compile(json!({"oneOf": [{"type": "integer"}, {"minimum": 0}]}));
        accepts(&one, &[json!(-1), json!(0.5)]);
        assert_eq!(
            lines(&one, json!(3)),
            [": matches 2 alternatives in `oneOf` (alternatives 0 and 1) but must match exactly one"]
        );
        assert_eq!(
            lines(&one, json!(-0.5)),
            [": expected a number >= 0, got -0.5"]
        );

        let all = compile(json!({"allOf": [{"type": "string"}, {"maxLength": 2}]}));
        accepts(&all, &[json!("ab")]);
        assert_eq!(
            lines(&all, json!("abc")),
            [": expected at most 2 characters, got 3"]
        );
        refuses(&all, &[json!(1)]);

        let not = compile(json!({"not": {"type": "null"}}));
        accepts(&not, &[json!(0), json!("")]);
        assert_eq!(
            lines(&not, json!(null)),
            [": must not match the schema under `not`"]
        );
    }

    #[test]
    fn schema_pydantic_discriminated_union_reports_closest_branch() {
        let s = compile(json!({
            "$defs": {
                "Cat": {"properties": {"kind": {"const": "cat", "title": "Kind", "type": "string"},
                                       "lives": {"title": "Lives", "type": "integer"}},
                        "required": ["kind", "lives"], "title": "Cat", "type": "object"},
                "Dog": {"properties": {"kind": {"const": "dog", "title": "Kind", "type": "string"},
                                       "good": {"default": true, "title": "Good", "type": "boolean"}},
                        "required": ["kind"], "title": "Dog", "type": "object"}
            },
            "properties": {"pet": {
                "discriminator": {"mapping": {"cat": "#/$defs/Cat", "dog": "#/$defs/Dog"}, "propertyName": "kind"},
                "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}], "title": "Pet"}},
            "required": ["pet"], "title": "Pet", "type": "object"
        }));
        accepts(
            &s,
            &[
                json!({"pet": {"kind": "cat", "lives": 9}}),
                json!({"pet": {"kind": "dog"}}),
            ],
        );
        assert_eq!(
            lines(&s, json!({"pet": {"kind": "dog", "good": "yes"}})),
            [
                "/pet: matches none of the 2 alternatives in `oneOf`; the closest is alternative 1, which fails as follows",
                "/pet/good: expected boolean, got string \"yes\"",
            ]
        );
        assert_eq!(
            lines(&s, json!({"pet": 3})),
            ["/pet: expected object, got integer 3"]
        );
    }

    /// `CreateOrder.model_json_schema()` from Pydantic 2.13, verbatim.
    fn create_order() -> Value {
        json!({"$defs": {"Address": {"properties": {"street": {"minLength": 1, "title": "Street", "type": "string"}, "city": {"title": "City", "type": "string"}, "zip": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Zip"}}, "required": ["street", "city"], "title": "Address", "type": "object"}, "LineItem": {"properties": {"sku": {"maxLength": 12, "title": "Sku", "type": "string"}, "quantity": {"maximum": 100, "minimum": 1, "title": "Quantity", "type": "integer"}, "price": {"exclusiveMinimum": 0, "title": "Price", "type": "number"}}, "required": ["sku", "quantity", "price"], "title": "LineItem", "type": "object"}, "Priority": {"enum": ["low", "high"], "title": "Priority", "type": "string"}}, "properties": {"customer": {"description": "Customer name", "title": "Customer", "type": "string"}, "address": {"$ref": "#/$defs/Address"}, "billing": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": null}, "items": {"items": {"$ref": "#/$defs/LineItem"}, "minItems": 1, "title": "Items", "type": "array"}, "channel": {"default": "web", "enum": ["web", "phone"], "title": "Channel", "type": "string"}, "priority": {"$ref": "#/$defs/Priority", "default": "low"}, "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Note"}, "tags": {"default": [], "items": {"type": "string"}, "title": "Tags", "type": "array", "uniqueItems": true}, "coords": {"anyOf": [{"maxItems": 2, "minItems": 2, "prefixItems": [{"type": "number"}, {"type": "number"}], "type": "array"}, {"type": "null"}], "default": null, "title": "Coords"}}, "required": ["customer", "address", "items"], "title": "CreateOrder", "type": "object"})
    }

    #[test]
    fn schema_pydantic_model() {
        let s = compile(create_order());
        accepts(
            &s,
            &[
                json!({"customer": "Ada", "address": {"street": "1 Main", "city": "X"},
                       "items": [{"sku": "A1", "quantity": 2, "price": 9.5}]}),
                json!({"customer": "Ada", "address": {"street": "1 Main", "city": "X", "zip": null},
                       "billing": {"street": "2 Side", "city": "Y", "zip": "123"},
                       "items": [{"sku": "A1", "quantity": 2.0, "price": 1}], "channel": "phone",
                       "priority": "high", "note": null, "tags": ["a", "b"], "coords": [1.5, -2],
                       "unknown": "extra fields are allowed by default"}),
            ],
        );
        assert_eq!(
            lines(
                &s,
                json!({"address": {"street": "", "city": 3}, "billing": {"city": "Y"},
                       "items": [{"sku": "A1", "quantity": 0, "price": 0}, {"sku": "ABCDEFGHIJKLM", "quantity": 1}],
                       "channel": "fax", "priority": "urgent", "note": 5, "tags": ["a", "a"], "coords": [1]})
            ),
            [
                "/address/street: expected at least 1 character, got 0",
                "/address/city: expected string, got integer 3",
                "/billing: missing required property `street`",
                "/items/0/quantity: expected a number >= 1, got 0",
                "/items/0/price: expected a number > 0, got 0",
                "/items/1/sku: expected at most 12 characters, got 13",
                "/items/1: missing required property `price`",
                "/channel: expected one of \"web\", \"phone\", got \"fax\"",
                "/priority: expected one of \"low\", \"high\", got \"urgent\"",
                "/note: expected string or null, got integer 5",
                "/tags: items 0 and 1 are equal, but items must be unique",
                "/coords: expected at least 2 items, got 1",
                ": missing required property `customer`",
            ]
        );
        assert_eq!(lines(&s, json!([])), [": expected object, got array"]);
    }

    #[test]
    fn schema_recursive_ref() {
        // `Tree.model_json_schema()` from Pydantic: the root itself is a `$ref`.
        let s = compile(
            json!({"$defs": {"Tree": {"properties": {"value": {"title": "Value", "type": "integer"}, "children": {"default": [], "items": {"$ref": "#/$defs/Tree"}, "title": "Children", "type": "array"}}, "required": ["value"], "title": "Tree", "type": "object"}}, "$ref": "#/$defs/Tree"}),
        );
        accepts(
            &s,
            &[json!({"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]})],
        );
        assert_eq!(
            lines(
                &s,
                json!({"value": 1, "children": [{"value": 2, "children": [{"value": "3"}, {}]}]})
            ),
            [
                "/children/0/children/0/value: expected integer, got string \"3\"",
                "/children/0/children/1: missing required property `value`",
            ]
        );

        let root_ref = compile(
            json!({"type": "array", "items": {"anyOf": [{"type": "integer"}, {"$ref": "#"}]}}),
        );
        accepts(&root_ref, &[json!([1, [2, [3, []]]])]);
        assert_eq!(
            lines(&root_ref, json!([1, [2, ["x"]]])),
            ["/1/1/0: expected integer or array, got string \"x\""]
        );

        let legacy = compile(
            json!({"definitions": {"a/b": {"type": "string"}}, "$ref": "#/definitions/a~1b"}),
        );
        accepts(&legacy, &[json!("x")]);
        refuses(&legacy, &[json!(1)]);

        let mut deep = json!(null);
        for _ in 0..300 {
            deep = json!([deep]);
        }
        let nested = compile(
            json!({"$defs": {"N": {"anyOf": [{"type": "null"}, {"items": {"$ref": "#/$defs/N"}}]}}, "$ref": "#/$defs/N"}),
        );
        let message = &errors(&nested, deep)[0].message;
        assert!(message.contains("nested deeper than 256"), "{message}");
    }

    #[test]
    fn schema_compile_errors_name_keyword_and_path() {
        let cases = [
            (json!({"patternProperties": {"\\a": {}}}), "the `patternProperties` regular expression \"\\\\a\" cannot be enforced as ECMA-262 (JSON Schema's dialect): `\\a` at character 0 has no meaning", " at (root)"),
            (json!({"properties": {"x": {"propertyNames": {"pattern": "(?i)x"}}}}), "the `pattern` regular expression \"(?i)x\" cannot be enforced", " at /properties/x/propertyNames"),
            (json!({"patternProperties": []}), "`patternProperties` must be an object", " at (root)"),
            (json!({"pattern": 3}), "`pattern` must be a string", " at (root)"),
            (json!({"properties": {"x": {"$id": "x.json"}}}), "`$id` inside a subschema is not supported", " at /properties/x"),
            (json!({"unevaluatedProperties": false}), "unsupported keyword `unevaluatedProperties`; the engine's validator supports type, properties, patternProperties", " at (root)"),
            (json!({"properties": {"a": {"type": 3}}}), "`type` must be a string or array of strings", " at /properties/a"),
            (json!({"type": "int"}), "unknown type `int` in `type`; expected one of string, number, integer, boolean, object, array, null", " at (root)"),
            (json!({"type": []}), "`type` must not be an empty array", " at (root)"),
            (json!({"items": {"pattern": "^a{,2}"}}), "`{` at character 2 starts `{,n}`", " at /items"),
            (json!({"properties": {"a": {"$ref": "#/$defs/Missing"}}}), "`$ref` target `#/$defs/Missing` does not exist in the schema (nothing at /$defs)", " at /properties/a"),
            (json!({"$ref": "other.json#/x"}), "`$ref` target `other.json#/x` is not supported; the engine resolves references inside this schema only", " at (root)"),
            (json!({"$ref": "#/$defs/A/properties/b", "$defs": {"A": {}}}), "does not exist in the schema (nothing at /$defs/A/properties)", " at (root)"),
            (json!({"$ref": "#/$defs/A/const", "$defs": {"A": {"const": {}}}}), "does not point at a schema: `const` at /$defs/A is not a keyword that holds schemas", " at (root)"),
            (json!({"$ref": "#/$defs", "$defs": {}}), "points at `$defs` itself, not at a schema inside it", " at (root)"),
            (json!({"$ref": "#/anyOf/01", "anyOf": [{}, {}]}), "nothing at /anyOf/01", " at (root)"),
            (json!({"$ref": "#/$defs/a~2", "$defs": {}}), "has `~` not followed by 0 or 1", " at (root)"),
            (json!({"$ref": "#/$defs/%ZZ"}), "malformed percent-escape", " at (root)"),
            (json!({"$ref": "#/$defs/%FF"}), "is not UTF-8", " at (root)"),
            (json!({"$ref": "#node"}), "plain-name fragment (`$anchor`)", " at (root)"),
            (json!({"$defs": {"A": {"type": "object", "nullable": true}}}), "unsupported keyword `nullable` (OpenAPI)", " at /$defs/A"),
            (json!({"$defs": {"A": {"allOf": [{"$ref": "#/$defs/A"}]}}}), "the schema at /$defs/A refers back to itself", "would never end"),
            (json!({"$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"not": {"$ref": "#/$defs/A"}}}}), "refers back to itself", "would never end"),
            (json!({"anyOf": [{"type": "string"}, {"$ref": "#"}]}), "the schema at (root) refers back", ""),
            (json!({"items": [{"type": "string"}]}), "`items` must be a schema; for tuples use `prefixItems`", " at (root)"),
            (json!({"exclusiveMinimum": true}), "`exclusiveMinimum` must be a number (JSON Schema 2020-12)", " at (root)"),
            (json!({"multipleOf": 0}), "`multipleOf` must be greater than 0", " at (root)"),
            (json!({"minLength": -1}), "`minLength` must be a non-negative integer", " at (root)"),
            (json!({"maxItems": 1.5}), "`maxItems` must be a non-negative integer", " at (root)"),
            (json!({"required": ["a", 1]}), "`required` must be an array of strings", " at (root)"),
            (json!({"anyOf": []}), "`anyOf` must be a non-empty array of schemas", " at (root)"),
            (json!({"properties": {"a/b": "string"}}), "a schema must be an object or a boolean, got string", " at /properties/a~1b"),
            (json!({"enum": "a"}), "`enum` must be an array", " at (root)"),
            (json!({"uniqueItems": "yes"}), "`uniqueItems` must be a boolean", " at (root)"),
            (json!(3), "a schema must be an object or a boolean, got integer", " at (root)"),
        ];
        for (schema, contains, ends) in cases {
            let e = compile_err(schema.clone());
            assert!(e.contains(contains), "{schema}: {e}");
            assert!(e.ends_with(ends), "{schema}: {e}");
        }
        let nested = compile_err(
            json!({"anyOf": [{"type": "string"}, {"properties": {"x": {"pattern": "\\h"}}}]}),
        );
        assert!(nested.ends_with(" at /anyOf/1/properties/x"), "{nested}");
        // Unused definitions are checked too.
        assert!(compile_err(json!({"$defs": {"Unused": {"foo": 1}}})).contains("at /$defs/Unused"));
        // Definitions are checked in the order written, so the first mistake is the one named.
        let first = compile_err(json!({"$defs": {"A": {"bad": 1}, "B": {"worse": 1}}}));
        assert!(first.contains("`bad`"), "{first}");
    }

    #[test]
    fn schema_annotations_are_ignored() {
        let s = compile(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "x", "$comment": "c",
            "title": "T", "description": "D", "default": 1, "examples": [1], "format": "email",
            "deprecated": true, "readOnly": false, "writeOnly": false, "type": "string"
        }));
        accepts(&s, &[json!("not an email")]);
        refuses(&s, &[json!(1)]);
    }

    #[test]
    fn schema_violation_display_and_describe() {
        let s = compile(json!({
            "type": "object", "required": ["query"],
            "properties": {"limit": {"type": "integer"}, "a/b~c": {"type": "string"}}
        }));
        let v = errors(&s, json!({"limit": "10", "a/b~c": 1}));
        assert_eq!(
            v[0].to_string(),
            "at /limit: expected integer, got string \"10\""
        );
        assert_eq!(v[1].path, "/a~1b~0c");
        assert_eq!(
            describe(&[v[0].clone(), v[2].clone()]),
            "arguments do not match the schema: at /limit: expected integer, got string \"10\"; \
             at (root): missing required property `query`"
        );
        let long = errors(&compile(json!({"const": "x"})), json!("y".repeat(100)));
        assert!(long[0].message.ends_with("…"), "{}", long[0].message);
        assert!(long[0].message.len() < 80);
    }

    #[test]
    fn schema_violations_are_capped() {
        let s = compile(json!({"items": {"type": "string"}}));
        let v = errors(&s, Value::Array((0..100).map(|i| json!(i)).collect()));
        assert_eq!(v.len(), MAX_VIOLATIONS);
        assert_eq!(v[19].path, "/19");
    }

    #[test]
    fn schema_clone_shares_nodes() {
        let s = compile(create_order());
        let t = s.clone();
        assert!(Arc::ptr_eq(&s.nodes, &t.nodes));
        assert!(format!("{t:?}").contains("Schema"));
    }

    mod laws {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|i| json!(i)),
                any::<u64>().prop_map(|u| json!(u)),
                (-1e6f64..1e6).prop_map(|f| json!(f)),
                prop_oneof![Just(0.0), Just(3.0), Just(-1.5), Just(1e300)].prop_map(|f| json!(f)),
                "[a-z🦀é]{0,6}".prop_map(Value::String),
                prop_oneof![Just("web"), Just("cat"), Just("dog"), Just("kind")]
                    .prop_map(|s| json!(s)),
            ];
            leaf.prop_recursive(5, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec(
                        (
                            prop_oneof![
                                Just("kind".to_string()),
                                Just("value".to_string()),
                                Just("children".to_string()),
                                Just("customer".to_string()),
                                "[a-z/~]{1,4}",
                            ],
                            inner
                        ),
                        0..5
                    )
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
                ]
            })
        }

        fn schemas() -> Vec<Schema> {
            [
                create_order(),
                json!({"$defs": {"Tree": {"properties": {"value": {"type": "integer"}, "children": {"items": {"$ref": "#/$defs/Tree"}, "type": "array"}}, "required": ["value"], "type": "object"}}, "$ref": "#/$defs/Tree"}),
                json!({"oneOf": [{"type": "integer", "multipleOf": 3}, {"minimum": 0.5, "exclusiveMaximum": 100},
                                 {"properties": {"kind": {"const": "cat"}}, "additionalProperties": false}],
                       "not": {"const": 42}}),
                json!({"items": {"anyOf": [{"uniqueItems": true, "maxItems": 3}, {"minLength": 2, "maxLength": 4}, {"enum": [null, true, 1.0]}]},
                       "prefixItems": [{"type": "string"}], "minProperties": 1}),
                json!({"type": ["object", "array"], "additionalProperties": {"$ref": "#"}, "items": {"$ref": "#"}, "maxProperties": 3}),
                json!({"patternProperties": {"^k": {"type": "integer"}, "[/~]": false, "e$": {"$ref": "#"}},
                       "propertyNames": {"pattern": "^[a-z/~]+$", "maxLength": 3},
                       "items": {"anyOf": [{"pattern": "(?<=a)b|^$|🦀", "maxLength": 4}, {"multipleOf": 0.1}, {"not": {"pattern": "\\bé"}}]}}),
            ]
            .iter()
            .map(|s| Schema::compile(s).expect("law schemas compile"))
            .collect()
        }

        proptest! {
            #[test]
            fn schema_validate_never_panics_and_agrees_with_fast_check(value in json_value()) {
                for schema in schemas() {
                    let fast = schema.check(schema.root, &value, &Path::ROOT, &mut Sink::fast());
                    match schema.validate(&value) {
                        Ok(()) => prop_assert!(fast),
                        Err(violations) => {
                            prop_assert!(!fast);
                            prop_assert!(!violations.is_empty() && violations.len() <= MAX_VIOLATIONS);
                            for v in &violations {
                                prop_assert!(v.path.is_empty() || v.path.starts_with('/'), "{v}");
                                prop_assert!(!v.message.is_empty());
                            }
                        }
                    }
                    prop_assert!(Schema::compile(&json!(true)).unwrap().validate(&value).is_ok());
                }
            }

            #[test]
            fn schema_json_eq_matches_json_cmp(a in json_value(), b in json_value()) {
                prop_assert_eq!(json_eq(&a, &b), json_cmp(&a, &b).is_eq());
                prop_assert_eq!(json_cmp(&a, &b), json_cmp(&b, &a).reverse());
                prop_assert!(json_eq(&a, &a));
            }
        }
    }
}
