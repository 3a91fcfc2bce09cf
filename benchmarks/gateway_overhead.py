"""What the gateway costs per call on top of LiteLLM's Router, and the Router on top of raw HTTP.

One run, one loopback OpenAI-compatible peer (in its own process, so its CPU is not counted):
  raw      httpx posting the chat-completions JSON directly
  router   a bare LiteLLM Router with one deployment
  gateway  the full gateway: routing, guardrails (mask, output scan), rate limits, budget
           reservation and settlement in a SQLite ops store, usage and policy events, spans
each sequentially and with 32 calls in flight. Reports CPU time per call (this process only),
p50/p99 latency, and the ratios. Writes the table into docs/benchmarks.md.

    uv run python benchmarks/gateway_overhead.py [--calls 300] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]

import httpx  # noqa: E402
import litellm  # noqa: E402
from gateway_support import deployment, request, tenant, write_config  # noqa: E402

from agentprovision.store.db import make_engine, migrate  # noqa: E402
from agents.gateway import Gateway  # noqa: E402

DOC = REPO_ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- gateway_overhead:begin -->", "<!-- gateway_overhead:end -->"
CONCURRENCY = 32
PROMPT = "Summarise the open incidents for the platform team and list who owns each one."


def serve_peer(port_queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from openai_peer import OpenAIPeer

    peer = OpenAIPeer().start()
    port_queue.put(peer.port)
    while True:
        time.sleep(3600)


def measure_sync(call: Callable[[], object], calls: int) -> dict[str, float]:
    for _ in range(10):
        call()  # warm up connections and caches
    latencies = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(calls):
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return _figures(latencies, time.process_time() - cpu0, time.perf_counter() - wall0, calls)


def measure_async(make: Callable[[], Awaitable[object]], calls: int) -> dict[str, float]:
    async def run() -> dict[str, float]:
        for _ in range(10):
            await make()
        latencies: list[float] = []
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with limit:
                started = time.perf_counter()
                await make()
                latencies.append(time.perf_counter() - started)

        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(calls)))
        return _figures(latencies, time.process_time() - cpu0, time.perf_counter() - wall0, calls)

    return asyncio.run(run())


def _figures(latencies: list[float], cpu: float, wall: float, calls: int) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "cpu_ms": cpu / calls * 1000,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "calls_per_s": calls / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    server = context.Process(target=serve_peer, args=(ports,), daemon=True)
    server.start()
    port = ports.get(timeout=60)
    api_base = f"http://127.0.0.1:{port}/d/bench/v1"
    os.environ["GATEWAY_TEST_KEY"] = "loopback-benchmark-key"
    body = {"model": "bench", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}

    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    config = write_config(
        workdir / "config",
        [deployment("bench", api_base=api_base)],
        [
            tenant(
                "acme",
                hard=100_000,
                policies={"pii": "mask", "secrets": "mask", "scan_output": True},
                rate_limits={"rpm": 10_000_000, "tpm": 10_000_000_000},
            )
        ],
        {"num_retries": 2, "timeout_seconds": 30},
    )
    engine = make_engine(f"sqlite:///{workdir / 'ops.db'}")
    migrate(engine)
    gateway = Gateway(config, engine)
    router = litellm.Router(
        model_list=[
            {
                "model_name": "bench",
                "litellm_params": {"model": "openai/bench", "api_base": api_base, "api_key": "loopback-benchmark-key"},
            }
        ],
        num_retries=2,
        timeout=30,
    )
    messages = [{"role": "user", "content": PROMPT}]
    results: dict[tuple[str, str], dict[str, float]] = {}

    with httpx.Client() as client:
        results[("raw httpx", "sequential")] = measure_sync(
            lambda: client.post(f"{api_base}/chat/completions", json=body).json(), args.calls
        )

    async def raw_async() -> dict[str, float]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY)) as aclient:

            async def one() -> object:
                return (await aclient.post(f"{api_base}/chat/completions", json=body)).json()

            latencies: list[float] = []
            for _ in range(10):
                await one()
            limit = asyncio.Semaphore(CONCURRENCY)

            async def timed() -> None:
                async with limit:
                    started = time.perf_counter()
                    await one()
                    latencies.append(time.perf_counter() - started)

            cpu0, wall0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(timed() for _ in range(args.calls)))
            return _figures(latencies, time.process_time() - cpu0, time.perf_counter() - wall0, args.calls)

    results[("raw httpx", f"{CONCURRENCY} concurrent")] = asyncio.run(raw_async())
    results[("bare Router", "sequential")] = measure_sync(
        lambda: router.completion(model="bench", messages=messages, max_tokens=64), args.calls
    )
    results[("bare Router", f"{CONCURRENCY} concurrent")] = measure_async(
        lambda: router.acompletion(model="bench", messages=messages, max_tokens=64), args.calls
    )
    results[("full gateway", "sequential")] = measure_sync(
        lambda: gateway.complete(request("acme", PROMPT, max_tokens=64)), args.calls
    )
    results[("full gateway", f"{CONCURRENCY} concurrent")] = measure_async(
        lambda: gateway.acomplete(request("acme", PROMPT, max_tokens=64)), args.calls
    )
    gateway.close()
    server.terminate()

    table = render(results, args.calls)
    print(table)
    if not args.no_write:
        write_doc(table)


def render(results: dict[tuple[str, str], dict[str, float]], calls: int) -> str:
    lines = [
        f"{calls} calls per row; CPU is this process only (the peer runs in its own process).",
        "",
        "| client | load | CPU ms/call | p50 ms | p99 ms | calls/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (client, load), f in results.items():
        figures = f"{f['cpu_ms']:.2f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['calls_per_s']:.0f}"
        lines.append(f"| {client} | {load} | {figures} |")
    lines.append("")
    lines.append("| ratio (CPU per call) | sequential | concurrent |")
    lines.append("|---|---:|---:|")
    loads = ["sequential", f"{CONCURRENCY} concurrent"]
    for label, top, bottom in (
        ("bare Router / raw httpx", "bare Router", "raw httpx"),
        ("full gateway / bare Router", "full gateway", "bare Router"),
    ):
        ratios = [results[(top, load)]["cpu_ms"] / results[(bottom, load)]["cpu_ms"] for load in loads]
        lines.append(f"| {label} | {ratios[0]:.2f} | {ratios[1]:.2f} |")
    return "\n".join(lines)


def write_doc(table: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
    print(f"written to {DOC}")


if __name__ == "__main__":
    main()
