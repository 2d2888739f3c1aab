//! The runtime spec: parsing, validation and provider routing.
//!
//! `compile` turns the JSON the Python facade sends (docs/wire.md, "Runtime spec") into a
//! checked `Spec` and the normalized JSON (each agent with its resolved provider). Every check
//! names the offending agent or tool and says what to do. Imports nothing but `error` and
//! `schema`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::approval::{Approvals, Patch, Rule, Slot};
use crate::error::{EngineError, ErrorCode, Result};
use crate::schema::Schema;

/// Turns an agent may take in one run when its spec does not say.
pub const DEFAULT_MAX_TURNS: u32 = 100;

/// The built-in routing tool a coordinator uses to hand work to another agent.
pub const CALL_AGENT: &str = "call_agent";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Coordinator,
    Planner,
    Executor,
    Specialist,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub resource_id: String,
    pub version: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub name: String,
    pub role: Role,
    pub model: String,
    #[serde(default)]
    pub provider: Option<String>,
    pub prompt: String,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub max_turns: Option<u32>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub approval: Patch,
    #[serde(default)]
    pub tool_approvals: BTreeMap<String, Rule>,
    #[serde(default)]
    pub approval_timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub input_schema: Value,
    #[serde(default)]
    pub output_schema: Option<Value>,
    /// The tool's own approval rule; `default` inherits the agent's and the runtime's.
    #[serde(default)]
    pub approval: Slot,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpecDoc {
    pub name: String,
    pub schema: Value,
    #[serde(default = "kind")]
    pub discriminator: String,
    #[serde(default)]
    pub display_aliases: Vec<String>,
}

fn kind() -> String {
    "kind".to_owned()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSpecDoc {
    pub name: String,
    pub schema: Value,
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecDoc {
    pub tenant: TenantSpec,
    pub agents: Vec<AgentSpec>,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    #[serde(default)]
    pub providers: Vec<String>,
    #[serde(default)]
    pub plans: Vec<PlanSpecDoc>,
    #[serde(default)]
    pub references: Vec<ReferenceSpecDoc>,
    #[serde(default)]
    pub approvals: Approvals,
    #[serde(default)]
    pub approval_timeout_ms: Option<u64>,
}

/// The engine's own tools, answered by the engine (plans) or the runtime (references).
pub const STORE_PLAN: &str = "storePlan";
pub const GET_PLAN: &str = "getPlan";
pub const EXECUTE_PLAN: &str = "executePlan";
pub const RESOLVE_REF: &str = "resolveRef";
pub const GLIMPSE_REF: &str = "glimpseRef";

/// Built-in tools each role gets, besides `call_agent` for a coordinator.
pub fn builtin_tools(role: Role) -> &'static [&'static str] {
    match role {
        Role::Planner => &[STORE_PLAN, GET_PLAN],
        Role::Executor => &[GET_PLAN, EXECUTE_PLAN, RESOLVE_REF, GLIMPSE_REF],
        Role::Coordinator | Role::Specialist => &[GET_PLAN],
    }
}

pub fn is_builtin_tool(name: &str) -> bool {
    [
        STORE_PLAN,
        GET_PLAN,
        EXECUTE_PLAN,
        RESOLVE_REF,
        GLIMPSE_REF,
        CALL_AGENT,
    ]
    .contains(&name)
}

fn builtin_schema(name: &str) -> Value {
    let string = serde_json::json!({"type": "string", "minLength": 1});
    let handle = serde_json::json!({
        "type": "object",
        "properties": {"kind": string, "id": string},
        "required": ["kind", "id"],
    });
    let object = |props: Value, required: &[&str]| {
        serde_json::json!({
            "type": "object", "properties": props, "required": required,
            "additionalProperties": false,
        })
    };
    match name {
        STORE_PLAN => object(
            serde_json::json!({"specName": string, "planId": string, "body": {"type": "object"}}),
            &["specName", "planId", "body"],
        ),
        GET_PLAN | EXECUTE_PLAN => object(serde_json::json!({"planId": string}), &["planId"]),
        _ => object(serde_json::json!({"ref": handle}), &["ref"]),
    }
}

/// What an action dispatcher may return: nothing, or a count of affected entities.
fn dispatch_output_schema() -> Value {
    serde_json::json!({
        "anyOf": [
            {"type": "null"},
            {
                "type": "object",
                "properties": {
                    "entitiesAffected": {"type": "integer", "minimum": 0},
                    "summary": {"type": "string"},
                    "details": {},
                },
                "required": ["entitiesAffected"],
                "additionalProperties": false,
            },
        ]
    })
}

/// A compiled plan spec.
#[derive(Clone, Debug)]
pub struct PlanKind {
    pub spec: PlanSpecDoc,
    pub schema: Schema,
}

/// A compiled tool: its schemas checked once, so every call only validates.
#[derive(Clone, Debug)]
pub struct Tool {
    pub spec: ToolSpec,
    pub input: Schema,
    pub output: Option<Schema>,
}

/// A checked runtime spec with lookup tables.
#[derive(Clone, Debug)]
pub struct Spec {
    pub doc: SpecDoc,
    agents: HashMap<String, usize>,
    tools: HashMap<String, Tool>,
    plans: HashMap<String, PlanKind>,
    builtins: HashMap<&'static str, Schema>,
    dispatch_output: Schema,
}

/// The providers the engine knows how to route to, and the model-id prefixes that imply them.
const PROVIDER_PREFIXES: &[(&str, &str)] = &[
    ("claude-", "anthropic"),
    ("gpt-", "openai"),
    ("o1-", "openai"),
    ("o3-", "openai"),
];

pub const KNOWN_PROVIDERS: &[&str] = &["anthropic", "openai"];

/// The provider a model id routes to when the agent names none.
pub fn provider_for_model(model: &str) -> Option<&'static str> {
    PROVIDER_PREFIXES
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|(_, provider)| *provider)
}

fn spec_error(code: ErrorCode, message: String) -> EngineError {
    EngineError::new(code, message)
}

impl Spec {
    /// Parse and check a runtime spec.
    pub fn compile(bytes: &[u8]) -> Result<Spec> {
        let doc: SpecDoc = serde_json::from_slice(bytes).map_err(|e| {
            spec_error(
                ErrorCode::SpecInvalid,
                format!("the runtime spec is not valid: {e}; build it with define_runtime"),
            )
        })?;
        Spec::from_doc(doc)
    }

    pub fn from_doc(mut doc: SpecDoc) -> Result<Spec> {
        if doc.tenant.resource_id.trim().is_empty() || doc.tenant.version.trim().is_empty() {
            return Err(spec_error(
                ErrorCode::SpecInvalid,
                "the tenant needs a non-empty name and version".to_owned(),
            ));
        }
        for provider in &doc.providers {
            if !KNOWN_PROVIDERS.contains(&provider.as_str()) {
                return Err(spec_error(
                    ErrorCode::SpecUnknownProvider,
                    format!(
                        "unknown provider `{provider}`; the engine routes to {}",
                        KNOWN_PROVIDERS.join(", ")
                    ),
                ));
            }
        }

        let mut tools = HashMap::with_capacity(doc.tools.len());
        for tool in &doc.tools {
            let tool = compile_tool(tool)?;
            let name = tool.spec.name.clone();
            if tools.insert(name.clone(), tool).is_some() {
                return Err(spec_error(
                    ErrorCode::SpecDuplicateTool,
                    format!("two tools are named `{name}`; give each tool a unique name"),
                ));
            }
        }

        let mut agents = HashMap::with_capacity(doc.agents.len());
        let mut coordinator: Option<&str> = None;
        for (index, agent) in doc.agents.iter().enumerate() {
            check_agent_fields(agent)?;
            if agents.insert(agent.name.clone(), index).is_some() {
                return Err(spec_error(
                    ErrorCode::SpecDuplicateAgent,
                    format!(
                        "two agents are named `{}`; agent names must be unique",
                        agent.name
                    ),
                ));
            }
            if agent.role == Role::Coordinator {
                if let Some(first) = coordinator {
                    return Err(spec_error(
                        ErrorCode::SpecMultipleCoordinators,
                        format!(
                            "`{}` and `{first}` are both coordinators; a runtime has at most one",
                            agent.name
                        ),
                    ));
                }
                coordinator = Some(&agent.name);
            }
        }
        if doc.agents.is_empty() {
            return Err(spec_error(
                ErrorCode::SpecInvalid,
                "the runtime has no agents; pass at least one to define_runtime(agents=...)"
                    .to_owned(),
            ));
        }

        for agent in &doc.agents {
            check_routes(agent, &agents)?;
            for tool in &agent.tools {
                if !tools.contains_key(tool) {
                    return Err(spec_error(
                        ErrorCode::SpecUnknownTool,
                        format!(
                            "agent `{}` uses tool `{tool}`, which is not declared; pass its define_tool(...) in the agent's tools",
                            agent.name
                        ),
                    ));
                }
            }
        }

        for agent in &mut doc.agents {
            let provider = resolve_provider(agent, &doc.providers)?;
            agent.provider = Some(provider);
        }

        let plans = compile_plans(&doc.plans)?;
        for reference in &doc.references {
            Schema::compile(&reference.schema).map_err(|m| {
                spec_error(
                    ErrorCode::SpecInvalidSchema,
                    format!("reference `{}` has an unusable schema: {m}", reference.name),
                )
            })?;
        }
        check_approval_names(&doc, &agents, &tools)?;
        let builtins = [STORE_PLAN, GET_PLAN, EXECUTE_PLAN, RESOLVE_REF, GLIMPSE_REF]
            .into_iter()
            .map(|name| {
                let schema =
                    Schema::compile(&builtin_schema(name)).expect("built-in schemas compile");
                (name, schema)
            })
            .collect();
        let dispatch_output =
            Schema::compile(&dispatch_output_schema()).expect("the dispatcher schema compiles");
        Ok(Spec {
            doc,
            agents,
            tools,
            plans,
            builtins,
            dispatch_output,
        })
    }

    /// The normalized spec JSON (providers resolved).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.doc).expect("a spec always serializes")
    }

    pub fn tenant(&self) -> &str {
        &self.doc.tenant.resource_id
    }

    pub fn agent(&self, name: &str) -> Option<&AgentSpec> {
        self.agents.get(name).map(|&index| &self.doc.agents[index])
    }

    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.get(name)
    }

    pub fn plan_kind(&self, name: &str) -> Option<&PlanKind> {
        self.plans.get(name)
    }

    pub fn plan_names(&self) -> Vec<&str> {
        self.doc.plans.iter().map(|p| p.name.as_str()).collect()
    }

    /// The input schema of a built-in tool.
    pub fn builtin_input(&self, name: &str) -> Option<&Schema> {
        self.builtins.get(name)
    }

    pub fn dispatch_output(&self) -> &Schema {
        &self.dispatch_output
    }

    /// How long an approval raised by `agent` may wait, if it may not wait forever.
    pub fn approval_timeout_ms(&self, agent: &AgentSpec) -> Option<u64> {
        agent.approval_timeout_ms.or(self.doc.approval_timeout_ms)
    }

    pub fn coordinator(&self) -> Option<&AgentSpec> {
        self.doc
            .agents
            .iter()
            .find(|agent| agent.role == Role::Coordinator)
    }

    /// The agent a query without an explicit agent goes to: the coordinator, or the only agent.
    pub fn entry_agent(&self) -> Option<&AgentSpec> {
        self.coordinator().or(match self.doc.agents.as_slice() {
            [only] => Some(only),
            _ => None,
        })
    }

    pub fn max_turns(agent: &AgentSpec) -> u32 {
        agent.max_turns.unwrap_or(DEFAULT_MAX_TURNS)
    }

    pub fn agent_names(&self) -> Vec<&str> {
        self.doc.agents.iter().map(|a| a.name.as_str()).collect()
    }
}

fn compile_plans(plans: &[PlanSpecDoc]) -> Result<HashMap<String, PlanKind>> {
    let mut compiled = HashMap::with_capacity(plans.len());
    for plan in plans {
        let has_actions = plan.schema.pointer("/properties/actions/type")
            == Some(&Value::String("array".to_owned()));
        if !has_actions {
            return Err(spec_error(
                ErrorCode::SpecInvalidSchema,
                format!(
                    "plan `{}` has no top-level `actions` array in its schema; a plan schema is an object with `actions: list[...]`",
                    plan.name
                ),
            ));
        }
        let schema = Schema::compile(&plan.schema).map_err(|m| {
            spec_error(
                ErrorCode::SpecInvalidSchema,
                format!("plan `{}` has an unusable schema: {m}", plan.name),
            )
        })?;
        let kind = PlanKind {
            spec: plan.clone(),
            schema,
        };
        if compiled.insert(plan.name.clone(), kind).is_some() {
            return Err(spec_error(
                ErrorCode::SpecInvalid,
                format!(
                    "two plans are named `{}`; plan names must be unique",
                    plan.name
                ),
            ));
        }
    }
    Ok(compiled)
}

/// Overrides and `tool_approvals` may only name agents and tools that exist.
fn check_approval_names(
    doc: &SpecDoc,
    agents: &HashMap<String, usize>,
    tools: &HashMap<String, Tool>,
) -> Result<()> {
    let overrides = &doc.approvals.overrides;
    for agent in overrides.agents.keys() {
        if !agents.contains_key(agent) {
            return Err(spec_error(
                ErrorCode::SpecInvalid,
                format!("approval overrides name agent `{agent}`, which is not an agent of this runtime"),
            ));
        }
    }
    for tool in overrides.tools.keys() {
        if !tools.contains_key(tool) && !is_builtin_tool(tool) {
            return Err(spec_error(
                ErrorCode::SpecInvalid,
                format!("approval overrides name tool `{tool}`, which no agent uses"),
            ));
        }
    }
    for agent in &doc.agents {
        for tool in agent.tool_approvals.keys() {
            if !agent.tools.contains(tool) && !builtin_tools(agent.role).contains(&tool.as_str()) {
                return Err(spec_error(
                    ErrorCode::SpecInvalid,
                    format!(
                        "agent `{}` sets tool_approvals for `{tool}`, which is not one of its tools",
                        agent.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn compile_tool(tool: &ToolSpec) -> Result<Tool> {
    if tool.name.is_empty() || is_builtin_tool(&tool.name) {
        return Err(spec_error(
            ErrorCode::SpecInvalid,
            format!(
                "`{}` cannot be a tool name (empty or reserved); rename the tool",
                tool.name
            ),
        ));
    }
    let schema_error = |which: &str, message: String| {
        spec_error(
            ErrorCode::SpecInvalidSchema,
            format!(
                "tool `{}` has an unusable {which} schema: {message}",
                tool.name
            ),
        )
    };
    let input = Schema::compile(&tool.input_schema).map_err(|m| schema_error("input", m))?;
    let output = match &tool.output_schema {
        Some(schema) => Some(Schema::compile(schema).map_err(|m| schema_error("output", m))?),
        None => None,
    };
    Ok(Tool {
        spec: tool.clone(),
        input,
        output,
    })
}

fn check_agent_fields(agent: &AgentSpec) -> Result<()> {
    let problem = if agent.name.trim().is_empty() {
        Some("has an empty name".to_owned())
    } else if agent.model.trim().is_empty() {
        Some("has an empty model id".to_owned())
    } else if agent.max_turns == Some(0) {
        Some("has max_turns=0; use a value >= 1 or None".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(spec_error(
            ErrorCode::SpecInvalid,
            format!("agent `{}` {problem}", agent.name),
        )),
        None => Ok(()),
    }
}

fn check_routes(agent: &AgentSpec, agents: &HashMap<String, usize>) -> Result<()> {
    if agent.role == Role::Coordinator && agent.routes.is_empty() {
        return Err(spec_error(
            ErrorCode::SpecCoordinatorWithoutRoutes,
            format!(
                "coordinator `{}` has no routes; list the agents it may call in routes=[...]",
                agent.name
            ),
        ));
    }
    for route in &agent.routes {
        if route == &agent.name {
            return Err(spec_error(
                ErrorCode::SpecSelfRoute,
                format!(
                    "agent `{}` routes to itself; remove `{route}` from its routes",
                    agent.name
                ),
            ));
        }
        if !agents.contains_key(route) {
            return Err(spec_error(
                ErrorCode::SpecUnknownRoute,
                format!(
                    "agent `{}` routes to `{route}`, which is not an agent of this runtime; add it to agents=[...] or fix the route",
                    agent.name
                ),
            ));
        }
    }
    Ok(())
}

fn resolve_provider(agent: &AgentSpec, declared: &[String]) -> Result<String> {
    let provider = match &agent.provider {
        Some(explicit) => {
            if !KNOWN_PROVIDERS.contains(&explicit.as_str()) {
                return Err(spec_error(
                    ErrorCode::SpecUnknownProvider,
                    format!(
                        "agent `{}` names provider `{explicit}`; the engine routes to {}",
                        agent.name,
                        KNOWN_PROVIDERS.join(", ")
                    ),
                ));
            }
            explicit.clone()
        }
        None => provider_for_model(&agent.model)
            .ok_or_else(|| {
                spec_error(
                    ErrorCode::SpecUnknownProvider,
                    format!(
                        "agent `{}` uses model `{}`, which routes to no known provider; pass provider=\"anthropic\" or provider=\"openai\"",
                        agent.name, agent.model
                    ),
                )
            })?
            .to_owned(),
    };
    if !declared.contains(&provider) {
        return Err(spec_error(
            ErrorCode::SpecProviderNotDeclared,
            format!(
                "agent `{}` uses provider `{provider}` (model `{}`), but the runtime declares {}; add `{provider}` to define_runtime(providers=...)",
                agent.name,
                agent.model,
                if declared.is_empty() {
                    "no providers".to_owned()
                } else {
                    declared.join(", ")
                }
            ),
        ));
    }
    Ok(provider)
}

/// List prices in USD per million tokens (input, output), matched by model-id prefix, longest
/// first. Used for the run's estimated cost summary; unknown models cost 0 and are reported
/// as unpriced.
const PRICES: &[(&str, f64, f64)] = &[
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-haiku-4", 1.0, 5.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("gpt-4o-mini", 0.15, 0.6),
    ("gpt-4o", 2.5, 10.0),
    ("gpt-4.1-mini", 0.4, 1.6),
    ("gpt-4.1", 2.0, 8.0),
    ("o1-", 15.0, 60.0),
    ("o3-", 2.0, 8.0),
];

/// Cost in USD of `input`/`output` tokens on `model`, or None when the model is unpriced.
pub fn price(model: &str, input: u64, output: u64) -> Option<f64> {
    PRICES
        .iter()
        .filter(|(prefix, _, _)| model.starts_with(prefix))
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|(_, i, o)| (input as f64 * i + output as f64 * o) / 1_000_000.0)
}

/// Agents by name, sorted, for messages that list choices.
pub fn sorted_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: BTreeMap<&str, ()> = names.into_iter().map(|n| (n, ())).collect();
    names.keys().copied().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(agents: Value, providers: Value) -> Result<Spec> {
        let doc = json!({
            "tenant": {"resource_id": "acme", "version": "v1"},
            "agents": agents,
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
            "providers": providers,
        });
        Spec::compile(doc.to_string().as_bytes())
    }

    fn agent(name: &str, role: &str, model: &str, routes: &[&str]) -> Value {
        json!({"name": name, "role": role, "model": model, "prompt": "p", "routes": routes})
    }

    #[test]
    fn routes_models_to_providers_by_prefix_and_explicit_wins() {
        assert_eq!(provider_for_model("claude-haiku-4-5"), Some("anthropic"));
        assert_eq!(provider_for_model("gpt-4o"), Some("openai"));
        assert_eq!(provider_for_model("o3-mini"), Some("openai"));
        assert_eq!(provider_for_model("llama-3"), None);
        let mut explicit = agent("a", "specialist", "my-model", &[]);
        explicit["provider"] = json!("openai");
        let compiled = spec(json!([explicit]), json!(["openai"])).unwrap();
        assert_eq!(
            compiled.agent("a").unwrap().provider.as_deref(),
            Some("openai")
        );
    }

    #[test]
    fn rejects_each_bad_spec_with_its_code_and_the_offender() {
        let cases = [
            (
                json!([
                    agent("a", "specialist", "claude-x", &[]),
                    agent("a", "planner", "claude-x", &[])
                ]),
                ErrorCode::SpecDuplicateAgent,
                "`a`",
            ),
            (
                json!([
                    agent("c1", "coordinator", "claude-x", &["s"]),
                    agent("c2", "coordinator", "claude-x", &["s"]),
                    agent("s", "specialist", "claude-x", &[])
                ]),
                ErrorCode::SpecMultipleCoordinators,
                "c2",
            ),
            (
                json!([agent("c", "coordinator", "claude-x", &["ghost"])]),
                ErrorCode::SpecUnknownRoute,
                "ghost",
            ),
            (
                json!([agent("c", "coordinator", "claude-x", &["c"])]),
                ErrorCode::SpecSelfRoute,
                "`c`",
            ),
            (
                json!([agent("c", "coordinator", "claude-x", &[])]),
                ErrorCode::SpecCoordinatorWithoutRoutes,
                "`c`",
            ),
            (
                json!([agent("g", "specialist", "gpt-4o", &[])]),
                ErrorCode::SpecProviderNotDeclared,
                "openai",
            ),
            (
                json!([agent("g", "specialist", "mystery", &[])]),
                ErrorCode::SpecUnknownProvider,
                "mystery",
            ),
        ];
        for (agents, code, offender) in cases {
            let err = spec(agents, json!(["anthropic"])).unwrap_err();
            assert_eq!(err.code, code, "{err}");
            assert!(err.message.contains(offender), "{err}");
        }
    }

    #[test]
    fn unknown_tool_and_bad_schema_are_rejected() {
        let mut a = agent("a", "specialist", "claude-x", &[]);
        a["tools"] = json!(["nope"]);
        let err = spec(json!([a]), json!(["anthropic"])).unwrap_err();
        assert_eq!(err.code, ErrorCode::SpecUnknownTool);

        let doc = json!({
            "tenant": {"resource_id": "acme", "version": "v1"},
            "agents": [agent("a", "specialist", "claude-x", &[])],
            "tools": [{"name": "t", "input_schema": {"type": 7}}],
            "providers": ["anthropic"],
        });
        let err = Spec::compile(doc.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::SpecInvalidSchema);
        assert!(err.message.contains("`t`"));
    }

    #[test]
    fn prices_by_longest_prefix() {
        assert_eq!(price("gpt-4o-mini", 1_000_000, 0), Some(0.15));
        assert_eq!(price("gpt-4o", 1_000_000, 0), Some(2.5));
        assert_eq!(price("unknown", 10, 10), None);
    }
}
