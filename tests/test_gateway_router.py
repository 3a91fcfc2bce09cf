"""The gateway Router's per-thread event loop for sync calls: what happens when a call is interrupted.

Connection reuse and the loops' lifetime across threads are tested through the real HTTP path in
tests/test_gateway_http.py; an interruption cannot be provoked there, so here the Router's async
entry point is replaced by a coroutine that raises it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agents.gateway.router import GatewayRouter

MODEL_LIST = [{"model_name": "m", "litellm_params": {"model": "openai/m", "api_base": "http://127.0.0.1:9/v1"}}]


def test_an_interrupted_sync_call_leaves_nothing_to_resume_in_the_next_one() -> None:
    router = GatewayRouter(model_list=MODEL_LIST)
    leftovers: list[asyncio.Task[None]] = []

    async def interrupted(*_args: Any, **_kwargs: Any) -> None:
        leftovers.append(asyncio.get_running_loop().create_task(asyncio.sleep(60)))  # e.g. an attempt in flight
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    async def answered(*_args: Any, **_kwargs: Any) -> str:
        return "answer"

    router.async_function_with_fallbacks = answered  # type: ignore[method-assign]
    assert router.function_with_fallbacks(model="m") == "answer"
    first_loop = router.thread_loop()
    assert router.function_with_fallbacks(model="m") == "answer"
    assert router.thread_loop() is first_loop  # kept between calls

    router.async_function_with_fallbacks = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        router.function_with_fallbacks(model="m")
    assert first_loop.is_closed() and leftovers[0].cancelled()

    router.async_function_with_fallbacks = answered  # type: ignore[method-assign]
    assert router.function_with_fallbacks(model="m") == "answer"
    assert router.thread_loop() is not first_loop
    router.close_thread_loop()


def test_an_ordinary_error_keeps_the_loop() -> None:
    router = GatewayRouter(model_list=MODEL_LIST)

    async def failing(*_args: Any, **_kwargs: Any) -> None:
        raise ValueError("provider said no")

    router.async_function_with_fallbacks = failing  # type: ignore[method-assign]
    loop = router.thread_loop()
    with pytest.raises(ValueError, match="provider said no"):
        router.function_with_fallbacks(model="m")
    assert router.thread_loop() is loop and not loop.is_closed()
    router.close_thread_loop()
    assert loop.is_closed()
