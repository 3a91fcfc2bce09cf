"""What the gateway costs per call on top of LiteLLM's Router, and the Router on top of raw HTTP.

One run, one loopback OpenAI-compatible peer (in its own process, so its CPU is not counted):
  raw      httpx posting the chat-completions JSON directly
  router   a bare LiteLLM Router with one deployment
  gateway  the full gateway: routing, guardrails (mask, output scan), rate limits, budget
           reservation and settlement in a SQLite ops store, usage and policy events, spans
each sequentially and with 32 calls in flight. Reports CPU time per call (this process only),
p50/p99 latency, and the ratios. Writes the table into docs/benchmarks.md.

The clients take turns in interleaved rounds, so load from other work on a shared machine falls on
all of them alike; the per-round range of the ratio shows how much that load moved the figures.

    uv run python benchmarks/gateway_overhead.py [--calls 2000] [--rounds 10] [--store URL] [--no-write]

A concurrent round should be several times CONCURRENCY calls long: its first and last 32 calls run with
fewer than 32 in flight, where the gateway's ledger batches less. At 60 calls per round a third
of each round was that ramp (1.36x against 1.29x at 200 per round, same run conditions).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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
CLIENTS = ("raw httpx", "bare Router", "full gateway")
PROMPT = "Summarise the open incidents for the platform team and list who owns each one."


def serve_peer(port_queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from openai_peer import OpenAIPeer

    peer = OpenAIPeer().start()
    port_queue.put(peer.port)
    while True:
        time.sleep(3600)


class Row:
    """The figures of one client under one load, accumulated over the rounds."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0
        self.calls = 0
        self.latencies: list[float] = []
        self.round_cpu_ms: list[float] = []

    def add(self, latencies: list[float], cpu: float, wall: float) -> None:
        self.cpu += cpu
        self.wall += wall
        self.calls += len(latencies)
        self.latencies.extend(latencies)
        self.round_cpu_ms.append(cpu / len(latencies) * 1000)

    def figures(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        return {
            "cpu_ms": self.cpu / self.calls * 1000,
            "p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            "calls_per_s": self.calls / self.wall,
        }


def settle_heap() -> None:
    """Collect garbage before every timed row, for every client alike.

    The first calls load large tables (tokenizers, LiteLLM's maps); the full collection they later
    trigger costs 250-400 ms here and would land on whichever row happens to be running, which made
    single rounds swing by 2x. It is a start-up cost, not a per-call one.
    """
    gc.collect()


def measure_sync(call: Callable[[], object], calls: int, row: Row, warm_up: bool) -> None:
    for _ in range(10 if warm_up else 0):
        call()  # warm up connections and caches
    settle_heap()
    latencies = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(calls):
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    row.add(latencies, time.process_time() - cpu0, time.perf_counter() - wall0)


async def measure_async(make: Callable[[], Awaitable[object]], calls: int, row: Row, warm_up: bool) -> None:
    for _ in range(10 if warm_up else 0):
        await make()
    settle_heap()
    latencies: list[float] = []
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with limit:
            started = time.perf_counter()
            await make()
            latencies.append(time.perf_counter() - started)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    row.add(latencies, time.process_time() - cpu0, time.perf_counter() - wall0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per row, over all rounds")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (evens out a busy machine)")
    parser.add_argument("--store", help="ops-store URL for the gateway (default: a fresh SQLite file)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    per_round = max(1, args.calls // args.rounds)

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
    engine = make_engine(args.store or f"sqlite:///{workdir / 'ops.db'}")
    migrate(engine)
    gateway = Gateway(config, engine)
    # The bare Router gets the same list price the gateway gives its own Router, under its own name: LiteLLM
    # keeps prices in one process-wide map, and with a shared name whichever Router was built second decided
    # which of them ran LiteLLM's costly "priced at $0" diagnostic on every call.
    router = litellm.Router(
        model_list=[
            {
                "model_name": "bare",
                "litellm_params": {"model": "openai/bench", "api_base": api_base, "api_key": "loopback-benchmark-key"},
                "model_info": {"id": "bare", **gateway.catalogue[0].price.litellm_model_info()},
            }
        ],
        num_retries=2,
        timeout=30,
    )
    messages = [{"role": "user", "content": PROMPT}]
    concurrent = f"{CONCURRENCY} concurrent"
    results = {(client, load): Row() for client in CLIENTS for load in ("sequential", concurrent)}

    # Rounds alternate the clients, so a neighbour's burst on a shared machine lands on all of them.
    with httpx.Client() as client:
        sync_calls = {
            "raw httpx": lambda: client.post(f"{api_base}/chat/completions", json=body).json(),
            "bare Router": lambda: router.completion(model="bare", messages=messages, max_tokens=64),
            "full gateway": lambda: gateway.complete(request("acme", PROMPT, max_tokens=64)),
        }
        for number in range(args.rounds):
            for name, call in sync_calls.items():
                measure_sync(call, per_round, results[(name, "sequential")], warm_up=number == 0)

    async def run_concurrent() -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY)) as aclient:

            async def raw() -> object:
                return (await aclient.post(f"{api_base}/chat/completions", json=body)).json()

            async_calls = {
                "raw httpx": raw,
                "bare Router": lambda: router.acompletion(model="bare", messages=messages, max_tokens=64),
                "full gateway": lambda: gateway.acomplete(request("acme", PROMPT, max_tokens=64)),
            }
            for number in range(args.rounds):
                for name, make in async_calls.items():
                    await measure_async(make, per_round, results[(name, concurrent)], warm_up=number == 0)

    asyncio.run(run_concurrent())
    gateway.close()
    server.terminate()

    store = "PostgreSQL" if engine.dialect.name == "postgresql" else "SQLite"
    table = render(results, per_round * args.rounds, args.rounds, store)
    print(table)
    if not args.no_write:
        write_doc(table)


def render(results: dict[tuple[str, str], Row], calls: int, rounds: int, store: str) -> str:
    lines = [
        f"{calls} calls per row in {rounds} interleaved rounds; gateway ops store: {store}; CPU is this process only "
        "(the peer runs in its own process).",
        "",
        "| client | load | CPU ms/call | p50 ms | p99 ms | calls/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (client, load), row in results.items():
        f = row.figures()
        figures = f"{f['cpu_ms']:.2f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['calls_per_s']:.0f}"
        lines.append(f"| {client} | {load} | {figures} |")
    lines.append("")
    lines.append("| ratio (CPU per call) | sequential | concurrent | rounds: median (range), sequential | concurrent |")
    lines.append("|---|---:|---:|---:|---:|")
    loads = ["sequential", f"{CONCURRENCY} concurrent"]
    for label, top, bottom in (
        ("bare Router / raw httpx", "bare Router", "raw httpx"),
        ("full gateway / bare Router", "full gateway", "bare Router"),
    ):
        ratios = [
            results[(top, load)].figures()["cpu_ms"] / results[(bottom, load)].figures()["cpu_ms"] for load in loads
        ]
        spreads = []
        for load in loads:
            per_round = [
                t / b
                for t, b in zip(results[(top, load)].round_cpu_ms, results[(bottom, load)].round_cpu_ms, strict=True)
            ]
            spreads.append(f"{statistics.median(per_round):.2f} ({min(per_round):.2f}-{max(per_round):.2f})")
        lines.append(f"| {label} | {ratios[0]:.2f} | {ratios[1]:.2f} | {spreads[0]} | {spreads[1]} |")
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
