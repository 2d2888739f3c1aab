"""The fake provider server itself: the official SDKs read its non-streamed answers and model
lists, turns match requests (so concurrent threads each get theirs), the default responder,
the admin API, script files, and the server as a separate process."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from flowai_harness.errors import UsageError
from flowai_harness.providers import ModelProvider, build_providers, close_providers
from flowai_harness.testing import (
    FakeProvider,
    FakeRequest,
    ToolCall,
    Turn,
    Usage,
    turns_from_json,
)

MakeRequest = Callable[..., dict[str, Any]]


async def test_anthropic_sdk_reads_a_non_streamed_message(fake: FakeProvider) -> None:
    fake.add(
        Turn(
            reasoning="Think.",
            signature="sig-9",
            text="Here.",
            tool_calls=[ToolCall("lookup", {"q": "x"}, id="toolu_9")],
            usage=Usage(10, 5, 100, 7),
        )
    )
    client = anthropic.AsyncAnthropic(
        api_key="test-key", base_url=fake.anthropic_url, max_retries=0
    )
    try:
        message = await client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}],
        )
    finally:
        await client.close()

    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[2].model_dump(include={"id", "name", "input"}) == {
        "id": "toolu_9",
        "name": "lookup",
        "input": {"q": "x"},
    }
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (10, 100)
    assert fake.requests[0].body.get("stream") is None


async def test_openai_sdk_reads_a_non_streamed_completion(fake: FakeProvider) -> None:
    fake.add(Turn(text="Here.", tool_calls=[ToolCall("lookup", {"q": "x"}, id="call_9")]))
    client = openai.AsyncOpenAI(api_key="test-key", base_url=fake.openai_url, max_retries=0)
    try:
        completion = await client.chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        await client.close()

    choice = completion.choices[0]
    assert choice.message.content == "Here."
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.model_dump(include={"id", "function"}) == {
        "id": "call_9",
        "function": {"name": "lookup", "arguments": '{"q":"x"}'},
    }


async def test_both_sdks_list_models(fake: FakeProvider) -> None:
    claude = anthropic.AsyncAnthropic(
        api_key="test-key", base_url=fake.anthropic_url, max_retries=0
    )
    gpt = openai.AsyncOpenAI(api_key="test-key", base_url=fake.openai_url, max_retries=0)
    try:
        anthropic_models = [model.id async for model in claude.models.list()]
        openai_models = [model.id async for model in gpt.models.list()]
    finally:
        await claude.close()
        await gpt.close()

    assert anthropic_models == openai_models == ["claude-sonnet-4-6", "gpt-5"]


async def test_a_request_no_turn_accepts_is_answered_with_a_clear_server_error(
    fake: FakeProvider, providers: dict[str, ModelProvider], model_request: MakeRequest
) -> None:
    fake.add(Turn(text="only for openai", api="openai"))

    result = await providers["anthropic"].complete(model_request("anthropic"))

    assert result["failure"]["kind"] == "server"
    assert "no scripted turn accepts this request" in result["failure"]["message"]
    assert fake.requests[0].outcome == "unmatched"
    assert fake.pending_turns == 1


async def test_turns_match_by_content_so_concurrent_threads_get_their_own(
    fake: FakeProvider, providers: dict[str, ModelProvider], model_request: MakeRequest
) -> None:
    # Queued in the opposite order of the calls, and each held until both arrived.
    fake.add(Turn(text="Refunds: 2.", contains="thread-B", hold="both"))
    fake.add(Turn(text="Orders: 3.", contains="thread-A", hold="both"))

    def asking(thread: str) -> dict[str, Any]:
        text = f"[{thread}] how many?"
        return model_request(
            "openai", messages=[{"role": "user", "content": [{"type": "text", "text": text}]}]
        )

    calls = [
        asyncio.create_task(providers["openai"].complete(asking("thread-A"))),
        asyncio.create_task(providers["openai"].complete(asking("thread-B"))),
    ]
    await fake.wait_for_requests(2)
    fake.release("both")
    a, b = await asyncio.wait_for(asyncio.gather(*calls), 10)

    assert a["response"]["content"] == [{"type": "text", "text": "Orders: 3."}]
    assert b["response"]["content"] == [{"type": "text", "text": "Refunds: 2."}]


async def test_turns_answer_a_number_of_times_then_the_default_responder(
    fake: FakeProvider, providers: dict[str, ModelProvider], model_request: MakeRequest
) -> None:
    def echo(request: FakeRequest) -> Turn:
        return Turn(text=f"echo {request.body['model']} #{request.seq}", name="echo")

    fake.default = echo
    fake.add(Turn(text="twice", times=2, model="pinned-model", for_model="claude-sonnet-4-6"))

    texts = []
    for provider in ("anthropic", "anthropic", "anthropic", "openai"):
        response = (await providers[provider].complete(model_request(provider)))["response"]
        texts.append(response["content"][0]["text"])

    assert texts == ["twice", "twice", "echo claude-sonnet-4-6 #3", "echo gpt-5 #4"]
    assert [request.turn for request in fake.requests] == ["turn-1", "turn-1", "echo", "echo"]


async def test_the_admin_api_queues_turns_and_lists_requests(
    fake: FakeProvider, providers: dict[str, ModelProvider], model_request: MakeRequest
) -> None:
    script = {"turns": [{"text": "from the admin API", "name": "admin"}]}
    async with aiohttp.ClientSession(fake.url) as http:
        async with http.post("/_fake/turns", json=script) as answer:
            assert answer.status == 200
            assert await answer.json() == {"queued": 1}
        async with http.post("/_fake/turns", json={"turns": [{"txt": "typo"}]}) as answer:
            assert answer.status == 400
            assert "txt" in (await answer.json())["error"]

        result = await providers["anthropic"].complete(model_request("anthropic"))

        async with http.get("/_fake/requests") as answer:
            recorded = await answer.json()
        async with http.post("/_fake/reset") as answer:
            assert answer.status == 200
        async with http.get("/_fake/health") as answer:
            assert await answer.json() == {"ok": True, "queued": 0}

    assert result["response"]["content"][0]["text"] == "from the admin API"
    assert [(r["api"], r["turn"], r["status"], r["outcome"]) for r in recorded] == [
        ("anthropic", "admin", 200, "completed")
    ]
    assert recorded[0]["body"]["model"] == "claude-sonnet-4-6"
    # When it arrived and when the server was done with it (what benchmarks subtract).
    assert 0 < recorded[0]["arrived_at"] <= recorded[0]["finished_at"]
    assert fake.requests == []


def test_script_json_round_trips_every_field_and_rejects_typos() -> None:
    turns, default = turns_from_json(
        json.dumps(
            {
                "turns": [
                    {
                        "text": ["a", "b"],
                        "tool_calls": [{"name": "lookup", "args": {"q": 1}, "id": "t1"}],
                        "usage": {"input_tokens": 3, "output_tokens": 4},
                        "fault": {"kind": "drop", "after_chunks": 1},
                        "ttft_s": 0.2,
                        "api": "anthropic",
                        "times": None,
                    }
                ],
                "default": {"text": "fallback"},
            }
        )
    )

    (turn,) = turns
    assert turn.text == ("a", "b")
    assert turn.tool_calls == (ToolCall("lookup", {"q": 1}, "t1"),)
    assert turn.usage == Usage(3, 4)
    assert turn.fault is not None
    assert (turn.fault.kind, turn.fault.after_chunks) == ("drop", 1)
    assert turn.times is None
    assert default == Turn(text="fallback")

    for bad, words in [
        ('{"turns": [{"texts": "x"}]}', "unknown keys ['texts']"),
        ('{"turns": [{"fault": {"kind": "explode"}}]}', "kind must be one of"),
        ('{"turns": [{"api": "gemini"}]}', "api must be one of"),
        ('{"turns": [{"tool_calls": [{"args": {}}]}]}', "needs at least a name"),
        ('{"turn": []}', "unknown keys ['turn']"),
        ("{not json", "not JSON"),
    ]:
        with pytest.raises(UsageError, match=words.replace("[", r"\[").replace("]", r"\]")):
            turns_from_json(bad)


async def test_the_server_runs_as_a_process_from_a_script_file(
    tmp_path: Path, model_request: MakeRequest
) -> None:
    script = tmp_path / "turns.json"
    script.write_text(json.dumps({"turns": [{"text": "from a file", "api": "openai"}]}))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flowai_harness.testing.fake_provider",
        "--port",
        "0",
        "--script",
        str(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("fake provider listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        built = build_providers({"openai": {"apiKey": "k", "baseUrl": f"{url}/v1"}})
        try:
            result = await built["openai"].complete(model_request("openai"))
        finally:
            await close_providers(built)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)

    assert result["response"]["content"] == [{"type": "text", "text": "from a file"}]
    assert process.returncode == 0
    assert err == b""


async def test_a_missing_script_file_is_a_usage_error_exit(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flowai_harness.testing.fake_provider",
        "--script",
        str(tmp_path / "missing.json"),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 2
    assert b"cannot read the script" in err
