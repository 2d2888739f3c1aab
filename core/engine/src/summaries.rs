//! The run's closing summaries, in the seed's shapes (`data-latency-summary`,
//! `data-cost-summary`), computed from the folded run and the time of its end.
//!
//! The USD estimate rides beside the seed's token fields (`currency`, `totalCost`, per-agent
//! `cost`, `unpriced`), never instead of them. Imports `thread`, `spec` (prices), `event`.

use serde_json::{json, Value};

use crate::event::Usage;
use crate::spec::price;
use crate::thread::Run;

/// `data-latency-summary` data: where the run's time went.
pub fn latency(run: &Run, now: i64) -> Value {
    let mut data = json!({
        "totalDurationMs": now.saturating_sub(run.started_ts).max(0),
        "phases": {
            "llmCalls": run.llm_calls,
            "llmTimeMs": run.llm_ms,
            "subAgentTimeMs": run.sub_agent_ms,
            "toolTimeMs": run.tool_ms,
        },
        "toolTimings": run.tool_timings,
        "retryCount": run.retry_count,
        "hadTimeout": run.had_timeout,
    });
    if let Some(ttft) = run.ttft_ms {
        data["ttftMs"] = json!(ttft);
    }
    if let Some(first) = run.first_text_ms {
        data["firstTextMs"] = json!(first);
    }
    data
}

/// `data-cost-summary` data: tokens per agent and model actually used, totals, and the USD
/// estimate (list prices; models without a price count 0 and are listed as unpriced).
pub fn cost(run: &Run) -> Value {
    let mut total = Usage::default();
    let mut total_cost = 0.0;
    let mut unpriced: Vec<&str> = Vec::new();
    let agents: Vec<Value> = run
        .by_model
        .iter()
        .map(|m| {
            total.add(m.usage);
            let cost = if m.live {
                price(&m.model, m.usage)
            } else {
                Some(0.0)
            };
            match cost {
                Some(cost) => total_cost += cost,
                None => {
                    if !unpriced.contains(&m.model.as_str()) {
                        unpriced.push(&m.model);
                    }
                }
            }
            json!({
                "agentName": m.agent,
                "model": m.model,
                "provider": m.provider,
                "promptTokens": m.usage.prompt_tokens,
                "completionTokens": m.usage.completion_tokens,
                "cacheReadInputTokens": m.usage.cache_read_input_tokens,
                "cacheCreationInputTokens": m.usage.cache_creation_input_tokens,
                "totalTokens": m.usage.total(),
                "cost": cost.unwrap_or(0.0),
            })
        })
        .collect();
    json!({
        "agents": agents,
        "totalPromptTokens": total.prompt_tokens,
        "totalCompletionTokens": total.completion_tokens,
        "totalCacheReadInputTokens": total.cache_read_input_tokens,
        "totalCacheCreationInputTokens": total.cache_creation_input_tokens,
        "totalTokens": total.total(),
        "currency": "USD",
        "totalCost": total_cost,
        "unpriced": unpriced,
        "estimated": true,
    })
}
