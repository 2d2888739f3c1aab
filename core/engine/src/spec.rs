//! The runtime spec: parsing, validation, provider routing, and what the engine knows of it.
//!
//! `compile` turns the JSON the Python facade sends (docs/wire.md, "Runtime spec") into a
//! checked `Spec` and the normalized JSON (each agent with its resolved provider), with the
//! engine's knowledge of every agent under `compiled`: the tools its model is offered (built-in
//! ones with their descriptions and schemas) and the rule each call runs under. The facade
//! renders prompts and tool tables from that and keeps no copy of these tables. Every check
//! names the offending agent or tool and says what to do. Imports `error`, `schema`, `event`
//! and `approval` (the rules and their precedence).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::approval::{self, Approvals, Channel, Levels, Patch, Rule, Slot};
use crate::error::{EngineError, ErrorCode, Result};
use crate::event::FailureKind;
use crate::schema::Schema;

/// Turns an agent may take in one run when its spec does not say: the seed's default for live
/// models, and a roomier one for the deterministic interpreters (long test scripts).
pub const DEFAULT_MAX_TURNS: u32 = 16;
pub const DEFAULT_MAX_TURNS_INTERPRETED: u32 = 100;
/// Output tokens a model turn may use when the agent does not say.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

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
    /// Keeps its conversation across calls in a thread (None: the role's default).
    #[serde(default)]
    pub stateful: Option<bool>,
    #[serde(default)]
    pub toolkits: Vec<ToolkitDoc>,
    /// Models to fall back to, in order, when the agent's own model fails.
    #[serde(default)]
    pub fallback: Vec<ModelRef>,
    /// Failure kinds that fall through to the next model (None: the transient ones).
    #[serde(default)]
    pub fallback_on: Option<Vec<FailureKind>>,
    /// The agent's retry policy (None: the runtime's).
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub thinking_budget: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Mark the prompt, tools and conversation cacheable (default true).
    #[serde(default)]
    pub prompt_cache: Option<bool>,
}

/// A model, and the provider it goes to (None: routed by its id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelRef {
    pub model: String,
    pub provider: Option<String>,
}

impl<'de> Deserialize<'de> for ModelRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Doc {
            Id(String),
            Full {
                #[serde(alias = "id")]
                model: String,
                #[serde(default)]
                provider: Option<String>,
            },
        }
        Ok(match Doc::deserialize(d)? {
            Doc::Id(model) => ModelRef {
                model,
                provider: None,
            },
            Doc::Full { model, provider } => ModelRef { model, provider },
        })
    }
}

/// A built-in toolkit an agent opts into: `agents`, `plans`, `references` (or `catalog`,
/// which this build refuses). `tools` narrows which of its tools the agent gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ToolkitDoc {
    pub id: String,
    pub tools: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for ToolkitDoc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Config {
            #[serde(default)]
            tools: Option<Vec<String>>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Doc {
            Id(String),
            // The seed's `{id, config: {tools}}`, or a compiled spec's `{id, tools}` (what
            // `Serialize` writes: a compiled spec must compile to itself).
            Full {
                id: String,
                #[serde(default)]
                config: Option<Config>,
                #[serde(default)]
                tools: Option<Vec<String>>,
            },
        }
        Ok(match Doc::deserialize(d)? {
            Doc::Id(id) => ToolkitDoc { id, tools: None },
            Doc::Full { id, config, tools } => ToolkitDoc {
                id,
                tools: tools.or_else(|| config.and_then(|c| c.tools)),
            },
        })
    }
}

/// How a failed model call is retried: the engine's decision, replayed from the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per model of the chain, the first included.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_ms: u64,
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Wait at least the provider's `retry-after`, up to `max_retry_after_ms`.
    #[serde(default = "yes")]
    pub honor_retry_after: bool,
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after_ms: u64,
    #[serde(default = "transient")]
    pub retry_on: Vec<FailureKind>,
    /// A request with no answer after this long counts as a `timeout` failure.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: Option<u64>,
}

fn default_attempts() -> u32 {
    3
}
fn default_initial_backoff() -> u64 {
    1_000
}
fn default_max_backoff() -> u64 {
    30_000
}
fn default_multiplier() -> f64 {
    2.0
}
fn yes() -> bool {
    true
}
fn default_max_retry_after() -> u64 {
    60_000
}
fn default_request_timeout() -> Option<u64> {
    Some(300_000)
}

/// Failures worth another try: they say nothing about the request itself.
pub fn transient() -> Vec<FailureKind> {
    vec![
        FailureKind::RateLimited,
        FailureKind::Overloaded,
        FailureKind::Server,
        FailureKind::Timeout,
        FailureKind::Connection,
    ]
}

/// Failures that fall through to the next model of a chain by default.
pub fn default_fallback_on() -> Vec<FailureKind> {
    let mut kinds = transient();
    kinds.push(FailureKind::BadResponse);
    kinds
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: default_attempts(),
            initial_backoff_ms: default_initial_backoff(),
            max_backoff_ms: default_max_backoff(),
            multiplier: default_multiplier(),
            honor_retry_after: true,
            max_retry_after_ms: default_max_retry_after(),
            retry_on: transient(),
            request_timeout_ms: default_request_timeout(),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before attempt `failed + 1` on the same model, after `failed`
    /// attempts, given the provider's `retry-after`.
    pub fn backoff_ms(&self, failed: u32, retry_after_ms: Option<i64>) -> i64 {
        let exponent = failed.saturating_sub(1).min(30) as i32;
        let base = (self.initial_backoff_ms as f64) * self.multiplier.max(1.0).powi(exponent);
        let mut delay = base.min(self.max_backoff_ms as f64).max(0.0) as i64;
        if self.honor_retry_after {
            if let Some(after) = retry_after_ms {
                delay = delay.max(after.clamp(0, self.max_retry_after_ms as i64));
            }
        }
        delay
    }

    fn check(&self, owner: &str) -> Result<()> {
        let problem = if self.max_attempts == 0 {
            Some("max_attempts must be >= 1")
        } else if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            Some("multiplier must be a finite number >= 1")
        } else if self.initial_backoff_ms > self.max_backoff_ms {
            Some("initial_backoff_ms must not exceed max_backoff_ms")
        } else if self.request_timeout_ms == Some(0) {
            Some("request_timeout_ms must be > 0 (or null for no deadline)")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(spec_error(
                ErrorCode::SpecInvalid,
                format!("{owner}: retry policy is not valid: {problem}"),
            )),
            None => Ok(()),
        }
    }
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
    /// Display labels per plan status (`{"draft": "Proposed", ...}`).
    #[serde(default)]
    pub display_aliases: BTreeMap<String, String>,
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
    /// The runtime's retry policy for model calls (None: the defaults).
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// What an earlier compile worked out (`Spec::to_json`); recomputed, never trusted.
    #[serde(default, skip_serializing)]
    pub compiled: Option<Value>,
}

/// The engine's own tools, answered by the engine (plans) or the runtime (references).
pub const STORE_PLAN: &str = "storePlan";
pub const GET_PLAN: &str = "getPlan";
pub const EXECUTE_PLAN: &str = "executePlan";
pub const RESOLVE_REF: &str = "resolveRef";
pub const GLIMPSE_REF: &str = "glimpseRef";

/// Built-in tools each role gets without asking (the seed's role tools).
pub fn role_tools(role: Role) -> &'static [&'static str] {
    match role {
        Role::Coordinator => &[CALL_AGENT],
        Role::Planner => &[STORE_PLAN, GET_PLAN],
        Role::Executor => &[GET_PLAN, EXECUTE_PLAN, RESOLVE_REF, GLIMPSE_REF],
        Role::Specialist => &[],
    }
}

/// The toolkits a spec may name: the ones the engine grants tools for, then the seed's
/// `catalog`, which a spec may name but this build refuses (it has no data catalog).
pub const TOOLKITS: [&str; 4] = ["agents", "plans", "references", CATALOG];
const CATALOG: &str = "catalog";

/// The tools a toolkit grants an agent of `role`.
fn toolkit_tools(toolkit: &str, role: Role) -> Option<&'static [&'static str]> {
    Some(match toolkit {
        "agents" => &[CALL_AGENT],
        "plans" => match role {
            Role::Planner => &[STORE_PLAN, GET_PLAN],
            Role::Executor => &[GET_PLAN, EXECUTE_PLAN],
            Role::Coordinator | Role::Specialist => &[GET_PLAN],
        },
        "references" => &[RESOLVE_REF, GLIMPSE_REF],
        _ => return None,
    })
}

/// An agent's built-in tools: its role's, then its toolkits', each once.
fn agent_builtins(agent: &AgentSpec) -> Result<Vec<&'static str>> {
    let mut tools: Vec<&'static str> = role_tools(agent.role).to_vec();
    for toolkit in &agent.toolkits {
        if toolkit.id == CATALOG {
            return Err(spec_error(
                ErrorCode::SpecInvalid,
                format!(
                    "agent `{}` asks for the `catalog` toolkit, which needs a data catalog this build does not have; remove it, or give the agent tools of your own",
                    agent.name
                ),
            ));
        }
        let granted = toolkit_tools(&toolkit.id, agent.role).ok_or_else(|| {
            spec_error(
                ErrorCode::SpecInvalid,
                format!(
                    "agent `{}` asks for unknown toolkit `{}`; the toolkits are {}",
                    agent.name,
                    toolkit.id,
                    TOOLKITS[..TOOLKITS.len() - 1].join(", ")
                ),
            )
        })?;
        let chosen: Vec<&'static str> = match &toolkit.tools {
            None => granted.to_vec(),
            Some(names) => {
                let mut chosen = Vec::new();
                for name in names {
                    let tool = granted.iter().find(|t| **t == name).ok_or_else(|| {
                        spec_error(
                            ErrorCode::SpecInvalid,
                            format!(
                                "agent `{}`: toolkit `{}` has no tool `{name}`; its tools are {}",
                                agent.name,
                                toolkit.id,
                                granted.join(", ")
                            ),
                        )
                    })?;
                    chosen.push(*tool);
                }
                chosen
            }
        };
        for tool in chosen {
            if tool == CALL_AGENT && agent.routes.is_empty() {
                return Err(spec_error(
                    ErrorCode::SpecInvalid,
                    format!(
                        "agent `{}` uses the `agents` toolkit but has no routes; list the agents it may call",
                        agent.name
                    ),
                ));
            }
            if !tools.contains(&tool) {
                tools.push(tool);
            }
        }
    }
    Ok(tools)
}

/// Whether an agent keeps its conversation across calls by default (the seed's roles).
pub fn stateful_by_default(role: Role) -> bool {
    matches!(role, Role::Coordinator | Role::Planner)
}

/// Every built-in tool: no tool of a spec may take one of these names.
pub const BUILTIN_TOOLS: &[&str] = &[
    CALL_AGENT,
    STORE_PLAN,
    GET_PLAN,
    EXECUTE_PLAN,
    RESOLVE_REF,
    GLIMPSE_REF,
];

pub fn is_builtin_tool(name: &str) -> bool {
    BUILTIN_TOOLS.contains(&name)
}

/// What a built-in tool does, in the words the model reads.
pub fn builtin_description(name: &str) -> &'static str {
    match name {
        CALL_AGENT => "Hand a task to another agent and get its answer.",
        STORE_PLAN => "Store a plan (specName, planId, body) as a draft.",
        GET_PLAN => "Read a stored plan and its status (planId).",
        EXECUTE_PLAN => "Execute a stored plan (planId); it waits for approval if it needs one.",
        RESOLVE_REF => "Read the full value behind a reference handle (ref: {kind, id}).",
        GLIMPSE_REF => "Read the short summary of a reference handle (ref: {kind, id}).",
        _ => "",
    }
}

/// The input schema of a built-in tool (`call_agent`'s depends on the agent's routes).
pub fn builtin_schema(name: &str) -> Value {
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

/// `call_agent`'s input schema: the agents it may name are the caller's routes.
fn call_agent_schema(routes: &[String]) -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "agent": {"type": "string", "enum": routes},
            "prompt": {"type": "string", "description": "The task, in full: the agent sees nothing else."},
        },
        "required": ["agent", "prompt"],
        "additionalProperties": false,
    })
}

/// The gate a call of `tool` waits at, or None for the built-ins the engine answers itself
/// (`call_agent` routes, `getPlan` reads, `storePlan` stores a draft: the plan is gated where it
/// runs, at `executePlan`).
pub fn gate_channel(tool: &str) -> Option<Channel> {
    match tool {
        CALL_AGENT | GET_PLAN | STORE_PLAN => None,
        EXECUTE_PLAN => Some(Channel::Plans),
        _ => Some(Channel::Tools),
    }
}

fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Plans => "plans",
        Channel::Tools => "tools",
    }
}

/// A tool an agent's model is offered: its own tools, then its built-ins, as the model request
/// lists them (docs/wire.md, "Model calls").
#[derive(Clone, Debug, Serialize)]
pub struct OfferedTool<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub input_schema: Value,
    #[serde(skip)]
    pub builtin: bool,
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
    /// Each agent's built-in tools, by agent index.
    agent_builtins: Vec<Vec<&'static str>>,
    /// Each agent's model chain (its model, then its fallbacks), providers resolved.
    chains: Vec<Vec<ModelRef>>,
    dispatch_output: Schema,
}

/// The providers the engine knows how to route to, and the model-id prefixes that imply them.
/// Anything else goes to Anthropic, as in the seed.
const PROVIDER_PREFIXES: &[(&str, &str)] = &[
    ("claude-", "anthropic"),
    ("gpt-", "openai"),
    ("chatgpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4-", "openai"),
];

pub const KNOWN_PROVIDERS: &[&str] = &["anthropic", "openai"];

/// Provider names the seed uses for the same providers.
fn canonical_provider(name: &str) -> &str {
    match name {
        "openai-compatible" => "openai",
        other => other,
    }
}

/// The provider a model id routes to when the agent names none.
pub fn provider_for_model(model: &str) -> Option<&'static str> {
    if model.starts_with("anthropic.") || model.starts_with("us.anthropic.") {
        return None; // Bedrock ids: not routed by this build
    }
    Some(
        PROVIDER_PREFIXES
            .iter()
            .find(|(prefix, _)| model.starts_with(prefix))
            .map_or("anthropic", |(_, provider)| *provider),
    )
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
        for provider in &mut doc.providers {
            *provider = canonical_provider(provider).to_owned();
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

        // Before providers are resolved: a name an override gets wrong is the mistake to
        // report, whatever else the spec lacks.
        let agent_builtin_tools = doc
            .agents
            .iter()
            .map(agent_builtins)
            .collect::<Result<Vec<_>>>()?;
        check_approval_names(&doc, &agents, &tools, &agent_builtin_tools)?;

        if let Some(retry) = &doc.retry {
            retry.check("runtime")?;
        }
        let mut chains = Vec::with_capacity(doc.agents.len());
        for agent in &mut doc.agents {
            let provider = resolve_provider(
                &agent.name,
                &agent.model,
                agent.provider.as_deref(),
                &doc.providers,
            )?;
            agent.provider = Some(provider.clone());
            let mut chain = vec![ModelRef {
                model: agent.model.clone(),
                provider: Some(provider),
            }];
            for fallback in &mut agent.fallback {
                let provider = resolve_provider(
                    &agent.name,
                    &fallback.model,
                    fallback.provider.as_deref(),
                    &doc.providers,
                )?;
                fallback.provider = Some(provider);
                chain.push(fallback.clone());
            }
            if let Some(retry) = &agent.retry {
                retry.check(&format!("agent `{}`", agent.name))?;
            }
            if agent.max_tokens == Some(0) {
                return Err(spec_error(
                    ErrorCode::SpecInvalid,
                    format!("agent `{}` has max_tokens=0; use a value >= 1", agent.name),
                ));
            }
            chains.push(chain);
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
            agent_builtins: agent_builtin_tools,
            chains,
            dispatch_output,
        })
    }

    /// The normalized spec JSON (providers resolved), with what the engine knows of each agent
    /// under `compiled` (docs/wire.md, "Runtime spec"): its built-in tools, whether it is
    /// stateful, and every tool its model is offered with the gate its calls wait at and the
    /// rule they run under once every level and override applies. The facade renders prompts
    /// and tool tables from this rather than from copies of the engine's tables.
    pub fn to_json(&self) -> Vec<u8> {
        let mut doc = serde_json::to_value(&self.doc).expect("a spec always serializes");
        let compiled: serde_json::Map<String, Value> = self
            .doc
            .agents
            .iter()
            .map(|agent| (agent.name.clone(), self.knowledge(agent)))
            .collect();
        doc["compiled"] = Value::Object(compiled);
        serde_json::to_vec(&doc).expect("a spec always serializes")
    }

    /// What the engine knows of one agent (an entry of `compiled`).
    fn knowledge(&self, agent: &AgentSpec) -> Value {
        let tools: Vec<Value> = self
            .offered_tools(agent)
            .into_iter()
            .map(|tool| {
                let channel = gate_channel(tool.name);
                let rule =
                    channel.map_or(Rule::Never, |channel| self.rule(channel, agent, tool.name));
                serde_json::json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.input_schema,
                    "builtin": tool.builtin,
                    "gate": channel.map(channel_name),
                    "approval": rule,
                })
            })
            .collect();
        serde_json::json!({
            "builtin_tools": self.builtin_tools(agent),
            "stateful": self.is_stateful(agent),
            "tools": tools,
        })
    }

    /// The tools `agent`'s model is offered, with their input schemas: its own, then its
    /// built-ins.
    pub fn offered_tools<'a>(&'a self, agent: &'a AgentSpec) -> Vec<OfferedTool<'a>> {
        let builtins = self.builtin_tools(agent);
        let mut out = Vec::with_capacity(agent.tools.len() + builtins.len());
        for name in &agent.tools {
            let tool = self.tool(name).expect("compiled spec: agent tools exist");
            out.push(OfferedTool {
                name,
                description: &tool.spec.description,
                input_schema: tool.spec.input_schema.clone(),
                builtin: false,
            });
        }
        for name in builtins {
            out.push(OfferedTool {
                name,
                description: builtin_description(name),
                input_schema: if *name == CALL_AGENT {
                    call_agent_schema(&agent.routes)
                } else {
                    builtin_schema(name)
                },
                builtin: true,
            });
        }
        out
    }

    /// The rule a call of `tool` by `agent` runs under at the `channel` gate: the most specific
    /// level that says something (`approval::resolve`).
    pub fn rule(&self, channel: Channel, agent: &AgentSpec, tool: &str) -> Rule {
        approval::resolve(
            channel,
            &Levels {
                approvals: &self.doc.approvals,
                agent: &agent.name,
                agent_patch: &agent.approval,
                tool_rule: self.tool(tool).and_then(|t| t.spec.approval.0.as_ref()),
                agent_tool_rule: agent.tool_approvals.get(tool),
                tool: Some(tool),
            },
        )
    }

    fn index(&self, agent: &AgentSpec) -> usize {
        self.agents[&agent.name]
    }

    /// The agent's built-in tools (its role's and its toolkits').
    pub fn builtin_tools(&self, agent: &AgentSpec) -> &[&'static str] {
        &self.agent_builtins[self.index(agent)]
    }

    /// The agent's models in the order they are tried.
    pub fn chain(&self, agent: &AgentSpec) -> &[ModelRef] {
        &self.chains[self.index(agent)]
    }

    pub fn is_stateful(&self, agent: &AgentSpec) -> bool {
        agent
            .stateful
            .unwrap_or_else(|| stateful_by_default(agent.role))
    }

    /// The retry policy of the agent's model calls.
    pub fn retry<'a>(&'a self, agent: &'a AgentSpec) -> &'a RetryPolicy {
        static DEFAULT: std::sync::OnceLock<RetryPolicy> = std::sync::OnceLock::new();
        agent
            .retry
            .as_ref()
            .or(self.doc.retry.as_ref())
            .unwrap_or_else(|| DEFAULT.get_or_init(RetryPolicy::default))
    }

    pub fn falls_back_on(&self, agent: &AgentSpec, kind: FailureKind) -> bool {
        match &agent.fallback_on {
            Some(kinds) => kinds.contains(&kind),
            None => default_fallback_on().contains(&kind),
        }
    }

    /// The display label of a plan status, if the plan spec gives one.
    pub fn plan_alias(&self, spec_name: &str, status: &str) -> Option<&str> {
        self.plans
            .get(spec_name)?
            .spec
            .display_aliases
            .get(status)
            .map(String::as_str)
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

    pub fn max_turns(agent: &AgentSpec, default: u32) -> u32 {
        agent.max_turns.unwrap_or(default)
    }

    pub fn agent_names(&self) -> Vec<&str> {
        self.doc.agents.iter().map(|a| a.name.as_str()).collect()
    }
}

fn compile_plans(plans: &[PlanSpecDoc]) -> Result<HashMap<String, PlanKind>> {
    let mut compiled = HashMap::with_capacity(plans.len());
    for plan in plans {
        for status in plan.display_aliases.keys() {
            if crate::plan::PlanStatus::parse(status).is_none() {
                return Err(spec_error(
                    ErrorCode::SpecInvalid,
                    format!(
                        "plan `{}` has a display alias for `{status}`, which is not a plan status; the statuses are draft, pending_approval, approved, executing, executed, failed",
                        plan.name
                    ),
                ));
            }
        }
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

/// Overrides and `tool_approvals` may only name agents and tools that exist. Every unknown
/// name of the overrides is reported at once, so one edit fixes them all.
fn check_approval_names(
    doc: &SpecDoc,
    agents: &HashMap<String, usize>,
    tools: &HashMap<String, Tool>,
    builtins: &[Vec<&'static str>],
) -> Result<()> {
    let overrides = &doc.approvals.overrides;
    let quoted = |names: &mut dyn Iterator<Item = String>| {
        names
            .map(|name| format!("'{name}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unknown_agents: BTreeSet<&String> = overrides
        .agents
        .keys()
        .chain(overrides.agent_tools.keys())
        .filter(|agent| !agents.contains_key(*agent))
        .collect();
    let unknown_tools: BTreeSet<&String> = overrides
        .tools
        .keys()
        .filter(|tool| !tools.contains_key(*tool) && !is_builtin_tool(tool))
        .collect();
    let mut unused = Vec::new();
    for (agent, agent_tools) in &overrides.agent_tools {
        let Some(&index) = agents.get(agent) else {
            continue;
        };
        let spec = &doc.agents[index];
        for tool in agent_tools.keys() {
            if !spec.tools.contains(tool) && !is_builtin_tool(tool) {
                unused.push(format!("'{tool}' of agent '{agent}'"));
            }
        }
    }
    let mut problems = Vec::new();
    if !unknown_agents.is_empty() {
        problems.push(format!(
            "agents {} (the agents are {})",
            quoted(&mut unknown_agents.iter().map(|a| a.to_string())),
            sorted_names(doc.agents.iter().map(|a| a.name.as_str()))
        ));
    }
    if !unknown_tools.is_empty() {
        problems.push(format!(
            "tools {} (no agent uses a tool of that name)",
            quoted(&mut unknown_tools.iter().map(|t| t.to_string()))
        ));
    }
    if !unused.is_empty() {
        problems.push(format!(
            "tools {} (the agent does not use them)",
            unused.join(", ")
        ));
    }
    if !problems.is_empty() {
        return Err(spec_error(
            ErrorCode::SpecUnknownApprovalTarget,
            format!(
                "runtime: approval_overrides name unknown {}; fix or remove those entries",
                problems.join(" and ")
            ),
        ));
    }
    for (agent, builtins) in doc.agents.iter().zip(builtins) {
        for tool in agent.tool_approvals.keys() {
            if !agent.tools.contains(tool) && !builtins.contains(&tool.as_str()) {
                return Err(spec_error(
                    ErrorCode::SpecUnknownApprovalTarget,
                    format!(
                        "agent `{}` sets tool_approvals for `{tool}`, which is not one of its tools ({}); add the tool to its tools or remove the rule",
                        agent.name,
                        agent
                            .tools
                            .iter()
                            .map(String::as_str)
                            .chain(builtins.iter().copied())
                            .collect::<Vec<_>>()
                            .join(", ")
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

fn resolve_provider(
    agent: &str,
    model: &str,
    explicit: Option<&str>,
    declared: &[String],
) -> Result<String> {
    if model.trim().is_empty() {
        return Err(spec_error(
            ErrorCode::SpecInvalid,
            format!("agent `{agent}` has an empty model id"),
        ));
    }
    let provider = match explicit.map(canonical_provider) {
        Some(explicit) => {
            if !KNOWN_PROVIDERS.contains(&explicit) {
                return Err(spec_error(
                    ErrorCode::SpecUnknownProvider,
                    format!(
                        "agent `{agent}` names provider `{explicit}`; the engine routes to {}",
                        KNOWN_PROVIDERS.join(", ")
                    ),
                ));
            }
            explicit.to_owned()
        }
        None => provider_for_model(model)
            .ok_or_else(|| {
                spec_error(
                    ErrorCode::SpecUnknownProvider,
                    format!(
                        "agent `{agent}` uses model `{model}`, a Bedrock id this build cannot route; pass provider=\"anthropic\" or provider=\"openai\" with that provider's model id"
                    ),
                )
            })?
            .to_owned(),
    };
    if !declared.contains(&provider) {
        return Err(spec_error(
            ErrorCode::SpecProviderNotDeclared,
            format!(
                "agent `{agent}` uses provider `{provider}` (model `{model}`), but the runtime declares {}; add `{provider}` to define_runtime(providers=...)",
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

/// List prices in USD per million tokens (input, output, cache read, cache write), matched by
/// model-id prefix, longest first. Used for the run's estimated cost summary; unknown models
/// cost 0 and are reported as unpriced.
const PRICES: &[(&str, f64, f64, f64, f64)] = &[
    ("claude-opus-4", 15.0, 75.0, 1.5, 18.75),
    ("claude-sonnet-4", 3.0, 15.0, 0.3, 3.75),
    ("claude-haiku-4", 1.0, 5.0, 0.1, 1.25),
    ("claude-3-5-haiku", 0.8, 4.0, 0.08, 1.0),
    ("gpt-5-mini", 0.25, 2.0, 0.025, 0.0),
    ("gpt-5-nano", 0.05, 0.4, 0.005, 0.0),
    ("gpt-5", 1.25, 10.0, 0.125, 0.0),
    ("gpt-4o-mini", 0.15, 0.6, 0.075, 0.0),
    ("gpt-4o", 2.5, 10.0, 1.25, 0.0),
    ("gpt-4.1-mini", 0.4, 1.6, 0.1, 0.0),
    ("gpt-4.1", 2.0, 8.0, 0.5, 0.0),
    ("o1-", 15.0, 60.0, 7.5, 0.0),
    ("o3-", 2.0, 8.0, 0.5, 0.0),
];

/// Cost in USD of `usage` on `model`, or None when the model is unpriced.
pub fn price(model: &str, usage: crate::event::Usage) -> Option<f64> {
    PRICES
        .iter()
        .filter(|(prefix, ..)| model.starts_with(prefix))
        .max_by_key(|(prefix, ..)| prefix.len())
        .map(|(_, input, output, read, write)| {
            (usage.prompt_tokens as f64 * input
                + usage.completion_tokens as f64 * output
                + usage.cache_read_input_tokens as f64 * read
                + usage.cache_creation_input_tokens as f64 * write)
                / 1_000_000.0
        })
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
        assert_eq!(
            provider_for_model("llama-3"),
            Some("anthropic"),
            "the seed's default"
        );
        assert_eq!(provider_for_model("us.anthropic.claude-x"), None);
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
                json!([agent("g", "specialist", "anthropic.claude-v2", &[])]),
                ErrorCode::SpecUnknownProvider,
                "anthropic.claude-v2",
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

    fn knowledge(doc: Value) -> Value {
        let compiled = Spec::compile(doc.to_string().as_bytes()).unwrap();
        let json: Value = serde_json::from_slice(&compiled.to_json()).unwrap();
        json["compiled"].clone()
    }

    #[test]
    fn compiling_reports_each_agents_tools_and_the_rule_each_call_runs_under() {
        let mut executor = agent("x", "executor", "claude-x", &[]);
        executor["tools"] = json!(["lookup", "pay"]);
        executor["approval"] = json!({"tools": "always", "plans": "never"});
        executor["tool_approvals"] = json!({"pay": "never"});
        let mut boss = agent("boss", "coordinator", "claude-x", &["x"]);
        boss["approval"] = json!({"plans": {"approvers": 2}});
        let compiled = knowledge(json!({
            "tenant": {"resource_id": "acme", "version": "v1"},
            "agents": [boss, executor],
            "tools": [
                {"name": "lookup", "input_schema": {"type": "object"}, "description": "Look up."},
                {"name": "pay", "input_schema": {"type": "object"}, "approval": {"predicate": "p"}},
            ],
            "providers": ["anthropic"],
            "approvals": {"overrides": {"tools": {"getPlan": "always", "glimpseRef": "never"}}},
        }));
        let rules: Vec<(&str, &Value, &Value, bool)> = compiled["x"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap(),
                    &t["gate"],
                    &t["approval"],
                    t["builtin"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rules,
            [
                ("lookup", &json!("tools"), &json!("always"), false),
                // the agent's tool_approvals beat the tool's own predicate
                ("pay", &json!("tools"), &json!("never"), false),
                // answered by the engine: no gate, whatever an override says
                ("getPlan", &Value::Null, &json!("never"), true),
                ("executePlan", &json!("plans"), &json!("never"), true),
                ("resolveRef", &json!("tools"), &json!("always"), true),
                ("glimpseRef", &json!("tools"), &json!("never"), true),
            ]
        );
        let lookup = &compiled["x"]["tools"][0];
        assert_eq!(lookup["description"], "Look up.");
        assert_eq!(lookup["input_schema"], json!({"type": "object"}));
        assert_eq!(
            compiled["x"]["builtin_tools"],
            json!(["getPlan", "executePlan", "resolveRef", "glimpseRef"])
        );
        let call_agent = &compiled["boss"]["tools"][0];
        assert_eq!(call_agent["name"], "call_agent");
        assert_eq!(
            call_agent["input_schema"]["properties"]["agent"]["enum"],
            json!(["x"])
        );
        assert_eq!(call_agent["gate"], Value::Null);
        assert_eq!(compiled["boss"]["stateful"], true);
    }

    #[test]
    fn overrides_naming_unknown_agents_and_tools_are_reported_together() {
        let doc = json!({
            "tenant": {"resource_id": "acme", "version": "v1"},
            "agents": [agent("b", "specialist", "claude-x", &[]), agent("a", "specialist", "claude-x", &[])],
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
            // No provider is declared: the overrides' mistake is reported first.
            "providers": [],
            "approvals": {"overrides": {
                "agents": {"ghost": "always"},
                "tools": {"refund": "always", "lookup": "never", "storePlan": "always"},
                "agent_tools": {"a": {"lookup": "always"}, "spook": {"x": "never"}},
            }},
        });
        let err = Spec::compile(doc.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::SpecUnknownApprovalTarget);
        assert_eq!(
            err.message,
            "runtime: approval_overrides name unknown agents 'ghost', 'spook' (the agents are a, b) \
             and tools 'refund' (no agent uses a tool of that name) and tools 'lookup' of agent \
             'a' (the agent does not use them); fix or remove those entries"
        );
    }

    #[test]
    fn prices_by_longest_prefix() {
        use crate::event::Usage;
        assert_eq!(price("gpt-4o-mini", Usage::new(1_000_000, 0)), Some(0.15));
        assert_eq!(price("gpt-4o", Usage::new(1_000_000, 0)), Some(2.5));
        assert_eq!(price("unknown", Usage::new(10, 10)), None);
        let cached = Usage {
            cache_read_input_tokens: 1_000_000,
            ..Usage::default()
        };
        assert_eq!(price("claude-sonnet-4-6", cached), Some(0.3));
    }
}
