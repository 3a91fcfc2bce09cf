"""The gateway's LiteLLM Router: attempts recorded (attempts.py), and one event loop per thread for sync calls.

LiteLLM's sync `Router.completion` runs its retry and fallback logic in a brand-new event loop on every
call, and LiteLLM caches provider SDK clients under a key that includes the running loop's id. So each
sync call missed that cache: it built a new OpenAI client and HTTP pool, opened a new connection to the
provider (a new TLS handshake, against a real provider) and left the old client to be evicted (LiteLLM
issue #10126 describes the cache growing the same way). That was about a tenth of the Router's CPU per
call here (docs/benchmarks.md).

Here each thread keeps one loop for the Router's sync calls, so the cached client and its connections are
reused. Async callers are untouched, and a sync call from a thread whose own loop is already running
falls back to LiteLLM's way (a helper thread with a fresh loop).

The Router also counts every deployment's tokens and requests per minute, twice per call, for its own
tpm/rpm limits. It looks up (and deep-copies) the deployment's model info before it finds that none are
set, which was about a seventh of the bare Router's CPU per call here. The gateway enforces rate limits
itself (ratelimits.py), so deployments without LiteLLM limits are left out of that counting; a
deployment that does set tpm, rpm, itpm or otpm is counted exactly as LiteLLM does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import Any

from litellm.router_utils.pre_call_checks.io_token_rate_limit_check import deployment_has_io_token_limits

from agents.gateway.attempts import RecordingRouter


class _ThreadLoop:
    """One thread's loop for sync Router calls; closed once the thread (or the router) lets go of it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()  # a forked child must not share its parent's selector

    def close(self) -> None:
        if self.loop.is_closed() or self.loop.is_running():
            return
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            # Let them finish cancelling, as asyncio.run does; not possible from a thread already running
            # a loop (a garbage collection can run __del__ anywhere), where they are simply dropped.
            with contextlib.suppress(RuntimeError):
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def __del__(self) -> None:
        self.close()


class GatewayRouter(RecordingRouter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._thread_loops = threading.local()
        # The gateway never changes its model list after this; a deployment added later is counted as usual.
        self._uncounted_deployments = frozenset(
            deployment_id
            for deployment_id in self.model_id_to_deployment_index_map
            if not self._has_usage_limits(deployment_id)
        )

    async def _increment_deployment_usage(self, *, deployment_id: str, **kwargs: Any) -> str | None:
        if deployment_id in self._uncounted_deployments:
            return None  # what LiteLLM returns for a deployment without limits, without its lookups
        return await super()._increment_deployment_usage(deployment_id=deployment_id, **kwargs)

    def _has_usage_limits(self, deployment_id: str) -> bool:
        """LiteLLM's own test for "something to count" (Router._increment_deployment_usage), done once."""
        deployment = self.get_deployment(model_id=deployment_id)
        if deployment is None:
            return True
        try:
            model_info = self.get_router_model_info(deployment=deployment, received_model_name=deployment.model_name)
        except Exception:
            return True  # not in LiteLLM's map: leave the decision to LiteLLM, call by call
        limits = (
            deployment.get("tpm"),
            deployment.get("rpm"),
            deployment.litellm_params.tpm,
            deployment.litellm_params.rpm,
            model_info.get("tpm"),
            model_info.get("rpm"),
        )
        return any(limit is not None for limit in limits) or deployment_has_io_token_limits(deployment.model_dump())

    def function_with_fallbacks(self, *args: Any, **kwargs: Any) -> Any:
        """Every sync Router entry point (completion, embedding, ...) comes through here."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            loop = self.thread_loop()
            try:
                return loop.run_until_complete(self.async_function_with_fallbacks(*args, **kwargs))
            except BaseException as error:
                if not isinstance(error, Exception):
                    # Interrupted (KeyboardInterrupt, SystemExit): the unfinished call must not resume inside
                    # this thread's next one, so its loop goes, with whatever it still had scheduled.
                    self.close_thread_loop()
                raise
        return super().function_with_fallbacks(*args, **kwargs)

    def thread_loop(self) -> asyncio.AbstractEventLoop:
        """The calling thread's loop for sync calls, made on first use."""
        owned: _ThreadLoop | None = getattr(self._thread_loops, "owned", None)
        if owned is None or owned.pid != os.getpid() or owned.loop.is_closed():
            owned = self._thread_loops.owned = _ThreadLoop()
        return owned.loop

    def close_thread_loop(self) -> None:
        """Close the calling thread's loop now rather than when the thread ends."""
        owned: _ThreadLoop | None = getattr(self._thread_loops, "owned", None)
        if owned is not None:
            self._thread_loops.owned = None
            owned.close()
