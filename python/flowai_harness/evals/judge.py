"""The LLM judge of final responses: one binary verdict per judge scorer, failing closed.

Owns the judge prompt, the judge context and its hashes (``promptSha256`` of the rendered
prompt, ``contextSha256`` of the canonical JSON of what was judged: scorer id, instructions,
reference response, rubric, authored context, runtime context and the final response), the
``flowai.v1.ModelRequest`` payload a judge call sends, the parsing of the answer, and
:func:`run_judges`, which turns every outcome into a :class:`JudgeResult`.

The model is reached only through an injected async ``complete(request) -> result`` that takes
a ModelRequest payload and returns a ModelResult payload (docs/wire.md "Model calls"): the
provider adapters' signature. Any failure — no ``complete`` or no judge model, a raised error,
a ``failure`` result, a timeout, no text, text that is not the verdict JSON — gives a failed
verdict (score 0) with an ``errorKind``; a judge outage never reads as a pass. Cancellation
is the one thing that propagates.

Must not import the runtime, the native extension, the provider adapters or the runner.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, NamedTuple

import orjson
from pydantic import ValidationError

from .artifact import ModelInvocation
from .deadline import DeadlineExceeded, within_deadline
from .models import (
    FinalResponseEval,
    JudgeErrorKind,
    JudgeResult,
    JudgeRun,
    JudgeTrace,
    JudgeVerdict,
    ResponseScorer,
)

__all__ = [
    "DEFAULT_JUDGE_RUBRIC",
    "JUDGE_AGENT",
    "JUDGE_MAX_TOKENS",
    "JudgeModel",
    "ModelComplete",
    "build_judge_prompt",
    "judge_context",
    "judge_request",
    "parse_judge_answer",
    "run_judge",
    "run_judges",
    "sha256_hex",
    "stable_json_sha256",
]

# `complete(model_request_payload) -> model_result_payload`, as the provider adapters are.
ModelComplete = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

JUDGE_AGENT: Final = "judge"
JUDGE_MAX_TOKENS: Final = 2048
DEFAULT_JUDGE_RUBRIC: Final[Mapping[int, str]] = {
    0: "The final response does not meet the instructions above.",
    1: "The final response meets the instructions above.",
}
_JUDGE_SYSTEM: Final = (
    "You grade one answer of an AI agent against one criterion. You never call tools. "
    "You reply with a single JSON object and nothing else."
)
_ANSWER_SHAPE: Final = (
    '{"passed": true, "selected_rubric_score": 1, '
    '"reason": "One or two sentences grounded in the final response."}'
)


class JudgeModel(NamedTuple):
    """The provider and model a judge call goes to."""

    provider: str
    model: str


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable_json_sha256(value: object) -> str:
    """SHA-256 of the canonical JSON of ``value``: sorted keys, no whitespace, UTF-8."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha256_hex(canonical.encode())


def _rubric(scorer: ResponseScorer) -> dict[int, str]:
    return dict(scorer.rubric) if scorer.rubric is not None else dict(DEFAULT_JUDGE_RUBRIC)


def judge_context(
    scorer: ResponseScorer, response_text: str, run_context: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Everything a verdict depends on besides the model: hashed into ``contextSha256``."""
    return {
        "scorerId": scorer.id,
        "instructions": scorer.instructions,
        "referenceResponse": scorer.reference_response,
        "rubric": {str(score): text for score, text in sorted(_rubric(scorer).items())},
        "context": scorer.context,
        "runtimeContext": dict(run_context) if run_context is not None else None,
        "finalResponse": response_text,
    }


def _json_block(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def build_judge_prompt(
    scorer: ResponseScorer, response_text: str, run_context: Mapping[str, Any] | None
) -> str:
    """The judge's user message for one judge scorer."""
    if scorer.method != "judge":
        raise ValueError(f"scorer {scorer.id!r} is a {scorer.method} scorer, not a judge")
    sections = [
        "Decide whether the final response below meets one criterion. Judge only this "
        "criterion; ignore everything else about the response.",
        f"## Criterion ({scorer.id})\n{(scorer.instructions or '').strip()}",
        "## Rubric\n"
        + "\n".join(
            f"- {score}: {text.strip()}" for score, text in sorted(_rubric(scorer).items())
        ),
    ]
    if scorer.reference_response is not None:
        sections.append(f"## Reference response\n{scorer.reference_response.strip()}")
    if scorer.context is not None:
        sections.append(f"## Context given by the eval author\n{_json_block(scorer.context)}")
    if run_context is not None:
        sections.append(f"## Run context\n{_json_block(dict(run_context))}")
    sections.append(f"## Final response\n{response_text}")
    sections.append(
        "## Answer\nReply with only this JSON object, no code fence: passed is true exactly "
        "when selected_rubric_score is 1.\n" + _ANSWER_SHAPE
    )
    return "\n\n".join(sections)


def judge_request(request_id: str, judge: JudgeModel, prompt: str) -> dict[str, Any]:
    """The ``flowai.v1.ModelRequest`` payload of one judge call: one user turn, no tools,
    deterministic sampling, bounded output."""
    return {
        "request_id": request_id,
        "agent": JUDGE_AGENT,
        "provider": judge.provider,
        "model": judge.model,
        "attempt": 1,
        "turn": 1,
        "system": _JUDGE_SYSTEM,
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        "tools": [],
        "max_tokens": JUDGE_MAX_TOKENS,
        "temperature": 0,
        "thinking": None,
        "cache": False,
    }


def parse_judge_answer(text: str) -> JudgeVerdict | tuple[JudgeErrorKind, str]:
    """The verdict in the judge's text, or ``(error kind, reason)``. Strict: the text must be
    the verdict JSON object itself."""
    answer = text.strip()
    if not answer:
        return "judge_no_text", "Judge produced no text; there is no verdict to read."
    try:
        value = orjson.loads(answer)
    except orjson.JSONDecodeError as error:
        return "judge_invalid_json", f"Judge answer is not JSON ({error})."
    try:
        return JudgeVerdict.model_validate(value)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, item['loc'])) or 'answer'}: {item['msg']}"
            for item in error.errors()
        )
        return "judge_invalid_schema", f"Judge answer is not a verdict ({problems})."


def _failed(
    reason: str,
    kind: JudgeErrorKind,
    judge_run: JudgeRun | None = None,
    trace: JudgeTrace | None = None,
) -> JudgeResult:
    return JudgeResult(
        verdict=JudgeVerdict(passed=False, selected_rubric_score=0, reason=reason),
        judge_run=judge_run,
        error_kind=kind,
        judge_trace=trace,
    )


def _answer_text(response: Mapping[str, Any]) -> str:
    content = response.get("content")
    if not isinstance(content, list):
        return ""
    return "".join(
        block["text"]
        for block in content
        if isinstance(block, Mapping)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _invocation(response: Mapping[str, Any], judge: JudgeModel) -> ModelInvocation:
    usage = response.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    provider = response.get("provider")
    model = response.get("model")
    return ModelInvocation(
        agent=JUDGE_AGENT,
        provider=provider if isinstance(provider, str) and provider else judge.provider,
        model=model if isinstance(model, str) and model else judge.model,
        input_tokens=_count(usage, "prompt_tokens"),
        output_tokens=_count(usage, "completion_tokens"),
        cached_tokens=_count(usage, "cache_read_input_tokens"),
        cache_creation_tokens=_count(usage, "cache_creation_input_tokens"),
    )


async def run_judge(
    scorer: ResponseScorer,
    response_text: str,
    *,
    complete: ModelComplete | None,
    judge: JudgeModel | None,
    request_id: str,
    run_context: Mapping[str, Any] | None = None,
    include_trace: bool = False,
    timeout_secs: float | None = None,
) -> tuple[JudgeResult, ModelInvocation | None]:
    """Judge one response for one judge scorer; never raises except on cancellation."""
    if complete is None or judge is None:
        missing = "no model call was provided" if complete is None else "no judge model is set"
        return (
            _failed(
                f"Judge unavailable: {missing}; set provider/model on the eval config and run "
                "the eval on a runtime with a live provider.",
                "judge_provider_unavailable",
            ),
            None,
        )
    try:
        prompt = build_judge_prompt(scorer, response_text, run_context)
        context_hash = stable_json_sha256(judge_context(scorer, response_text, run_context))
    except (ValueError, TypeError) as error:
        return _failed(f"Judge prompt could not be built: {error}", "judge_prompt_failed"), None
    judge_run = JudgeRun(
        provider=judge.provider,
        model=judge.model,
        prompt_sha256=sha256_hex(prompt.encode()),
        context_sha256=context_hash,
    )
    result: object
    try:
        result = await within_deadline(
            complete(judge_request(request_id, judge, prompt)), timeout_secs
        )
    except asyncio.CancelledError:
        raise
    except DeadlineExceeded:
        return _failed(
            f"Judge call timed out after {timeout_secs} s.", "judge_execution_failed", judge_run
        ), None
    except Exception as error:  # fail closed on anything the call raises
        return _failed(
            f"Judge call failed: {type(error).__name__}: {error}",
            "judge_execution_failed",
            judge_run,
        ), None
    if not isinstance(result, Mapping):
        return _failed(
            "Judge call returned something that is not a ModelResult payload.",
            "judge_execution_failed",
            judge_run,
        ), None
    failure = result.get("failure")
    response = result.get("response")
    if isinstance(failure, Mapping) or not isinstance(response, Mapping):
        kind = failure.get("kind", "unknown") if isinstance(failure, Mapping) else "no response"
        message = failure.get("message", "") if isinstance(failure, Mapping) else ""
        return _failed(
            f"Judge model call failed ({kind}): {message}".rstrip(": "),
            "judge_execution_failed",
            judge_run,
        ), None
    text = _answer_text(response)
    trace = JudgeTrace(prompt=prompt, response=text) if include_trace else None
    parsed = parse_judge_answer(text)
    invocation = _invocation(response, judge)
    if isinstance(parsed, JudgeVerdict):
        return JudgeResult(verdict=parsed, judge_run=judge_run, judge_trace=trace), invocation
    kind, reason = parsed
    return _failed(reason, kind, judge_run, trace), invocation


async def run_judges(
    spec: FinalResponseEval,
    response_text: str,
    *,
    complete: ModelComplete | None,
    judge: JudgeModel | None,
    request_id_prefix: str,
    run_context: Mapping[str, Any] | None = None,
    include_trace: bool = False,
    timeout_secs: float | None = None,
) -> tuple[dict[str, JudgeResult], list[ModelInvocation]]:
    """Every judge scorer of ``spec``, one call each, in order: ``{scorer id: result}`` and
    the judge model invocations (for the sample's cost)."""
    results: dict[str, JudgeResult] = {}
    invocations: list[ModelInvocation] = []
    for scorer in spec.scorers:
        if scorer.method != "judge":
            continue
        result, invocation = await run_judge(
            scorer,
            response_text,
            complete=complete,
            judge=judge,
            request_id=f"{request_id_prefix}/judge-{scorer.id}/1",
            run_context=run_context,
            include_trace=include_trace,
            timeout_secs=timeout_secs,
        )
        results[scorer.id] = result
        if invocation is not None:
            invocations.append(invocation)
    return results, invocations
