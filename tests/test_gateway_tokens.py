"""The gateway's prompt token count is LiteLLM's, message for message."""

from __future__ import annotations

import litellm
import pytest

from agents.gateway.tokens import TOKENIZER_MODEL, count_prompt

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}

CASES = {
    "one user message": ([{"role": "user", "content": "Summarise the open incidents."}], None),
    "empty content": ([{"role": "user", "content": ""}], None),
    "system and user": (
        [
            {"role": "system", "content": "You are a careful analyst.\nAnswer in English."},
            {"role": "user", "content": "Wie hoch sind die Kosten im Oktober? 東京"},
        ],
        None,
    ),
    "a named participant": ([{"role": "user", "name": "omar", "content": "Hello there"}], None),
    "content parts": (
        [{"role": "user", "content": [{"type": "text", "text": "first part"}, {"type": "text", "text": "second"}]}],
        None,
    ),
    "a tool round trip": (
        [
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 4}'},
        ],
        [WEATHER_TOOL],
    ),
    "tools with a system prompt": (
        [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Lima?"}],
        [WEATHER_TOOL],
    ),
    "a long prompt": ([{"role": "user", "content": "budget review " * 2_000}], None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_count_matches_litellms_token_counter(name: str) -> None:
    messages, tools = CASES[name]
    expected = litellm.token_counter(model=TOKENIZER_MODEL, messages=messages, tools=tools)
    assert count_prompt(messages, tools) == expected
    assert expected > 0 or name == "empty content"


def test_count_honours_litellms_switch_that_turns_counting_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litellm, "disable_token_counter", True)
    assert count_prompt([{"role": "user", "content": "anything at all"}]) == 0
