"""Guardrails: detectors with checksums, mask/block/allow per tenant, and a 500+ string PII corpus
sent through the gateway to a real loopback peer."""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_support import deployment, request, tenant, write_config
from openai_peer import OpenAIPeer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine, MetaData, select

from agentprovision.store.db import make_engine, migrate
from agentprovision.store.models import Event
from agents.gateway import Gateway, GuardrailBlocked
from agents.gateway import telemetry as gateway_telemetry
from agents.gateway.guardrails import find, iban_ok, luhn_ok, mask

# --- generators of valid personal data and secrets ------------------------------------------------


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


def card(rng: random.Random) -> str:
    number = _luhn_complete(rng, rng.choice(["4", "51", "55", "37", "6011"]), rng.choice([15, 16]))
    separator = rng.choice(["", " ", "-"])
    return separator.join(number[i : i + 4] for i in range(0, len(number), 4))


def iban(rng: random.Random) -> str:
    country, length = rng.choice([("DE", 22), ("GB", 22), ("FR", 27), ("NL", 18), ("ES", 24)])
    bban = "".join(rng.choice(string.digits) for _ in range(length - 4))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    value = f"{country}{check:02d}{bban}"
    assert iban_ok(value)
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4)) if rng.random() < 0.5 else value


def national_id(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    if kind == 1:
        return (
            f"{rng.choice('ACEHJKLMPRSTWXY')}{rng.choice('ABCEHJKLMPRSTWXY')} {rng.randint(10, 99)} "
            f"{rng.randint(10, 99)} {rng.randint(10, 99)} {rng.choice('ABCD')}"
        )
    number = rng.randint(10_000_000, 99_999_999)
    return f"{number}{'TRWAGMYFPDXBNJZSQVHLCKE'[number % 23]}"


def email(rng: random.Random) -> str:
    user = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10)))
    return f"{user}.{rng.randint(1, 99)}@{rng.choice(['example.com', 'corp.example.org', 'mail.example.co.uk'])}"


def phone(rng: random.Random) -> str:
    return rng.choice(
        [
            f"+1 {rng.randint(200, 999)} {rng.randint(200, 999)} {rng.randint(1000, 9999)}",
            f"({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
            f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
            f"+49 30 {rng.randint(100000, 999999)}",
            f"020 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
        ]
    )


def api_key(rng: random.Random) -> str:
    alnum = string.ascii_letters + string.digits
    return rng.choice(
        [
            "sk-proj-" + "".join(rng.choice(alnum) for _ in range(40)),
            "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
            "ghp_" + "".join(rng.choice(alnum) for _ in range(36)),
            "xoxb-" + "-".join("".join(rng.choice(string.digits) for _ in range(12)) for _ in range(2)),
            "sk_live_" + "".join(rng.choice(alnum) for _ in range(24)),
            "eyJ"
            + "".join(rng.choice(alnum) for _ in range(20))
            + "."
            + "".join(rng.choice(alnum) for _ in range(30))
            + "."
            + "".join(rng.choice(alnum) for _ in range(25)),
        ]
    )


def private_key(rng: random.Random) -> str:
    body = "\n".join(
        "".join(rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(64)) for _ in range(4)
    )
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


GENERATORS = {
    "payment_card": card,
    "iban": iban,
    "national_id": national_id,
    "email": email,
    "phone": phone,
    "api_key": api_key,
    "private_key": private_key,
}
SECRETS = {"api_key", "private_key"}
TEMPLATES = [
    "Please check {} before Friday.",
    "Customer wrote: my details are {} thanks",
    "Ticket #4411 (priority 2): value {} appears in the log at 10:42",
    "{}",
    "Forwarding the record, see {}; order 20931 shipped on 2025-03-04.",
]


def corpus(size: int = 560, seed: int = 20) -> list[tuple[str, str, str]]:
    """(kind, item, sentence) triples; every kind equally often."""
    rng = random.Random(seed)
    kinds = sorted(GENERATORS)
    rows = []
    for index in range(size):
        kind = kinds[index % len(kinds)]
        item = GENERATORS[kind](rng)
        rows.append((kind, item, rng.choice(TEMPLATES).format(item)))
    return rows


# --- detectors ------------------------------------------------------------------------------------


def test_checksums_separate_real_numbers_from_lookalikes() -> None:
    assert [f.kind for f in find("card 4111 1111 1111 1111")] == ["payment_card"]
    assert find("card 4111 1111 1111 1112") == []  # fails Luhn
    assert [f.kind for f in find("IBAN GB82 WEST 1234 5698 7654 32")] == ["iban"]
    assert find("IBAN GB83 WEST 1234 5698 7654 32") == []  # fails mod-97
    assert [f.kind for f in find("DNI 12345678Z")] == ["national_id"]
    assert find("DNI 12345678A") == []  # wrong control letter
    assert find("SSN 000-12-3456 or 666-12-3456") == []  # never issued
    assert find("version 1.2.3, order 12345 on 2024-01-02 at 10:30, 3.14159") == []


def test_each_kind_in_the_corpus_is_found_as_that_kind() -> None:
    for kind, item, sentence in corpus(140, seed=3):
        kinds = [f.kind for f in find(sentence)]
        assert kind in kinds, (kind, item, sentence)
        assert item not in mask(sentence)


# --- through the gateway ---------------------------------------------------------------------------


@pytest.fixture
def peer() -> Iterator[OpenAIPeer]:
    server = OpenAIPeer().start()
    yield server
    server.stop()


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("GATEWAY_TEST_KEY", "loopback-key")
    engine = make_engine(f"sqlite:///{tmp_path / 'ops.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(gateway_telemetry, "tracer", lambda: provider.get_tracer(gateway_telemetry.TRACER_NAME))
    return exporter


def _everything_stored(engine: Engine) -> str:
    """Every row of every ops-store table, as text."""
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as connection:
        return "\n".join(
            json.dumps([list(row) for row in connection.execute(select(table))], default=str)
            for table in metadata.sorted_tables
        )


def test_pii_corpus_is_masked_before_the_provider_and_in_storage(
    peer: OpenAIPeer, engine: Engine, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    models = [deployment("mm", api_base=peer.api_base("mm"))]
    # store_prompts on: the strictest case for storage, since masked prompts are then kept.
    body = tenant("acme", hard=1000, policies={"pii": "mask", "store_prompts": True})
    gateway = Gateway(write_config(tmp_path / "c", models, [body], {"timeout_seconds": 5}), engine)
    rows = corpus()
    for _, _, sentence in rows:
        result = gateway.complete(request("acme", sentence, max_tokens=50))
        assert result.guardrails["prompt"]["action"] == "masked"
    gateway.close()

    sent = "\n".join(peer.bodies())
    stored = _everything_stored(engine)
    traced = "\n".join(json.dumps(dict(span.attributes or {})) for span in spans.get_finished_spans())
    reached = [item for _, item, _ in rows if item in sent or json.dumps(item)[1:-1] in sent]
    kept = [item for _, item, _ in rows if item in stored or json.dumps(item)[1:-1] in stored or item in traced]
    provider_rate = 1 - len(reached) / len(rows)
    storage_rate = 1 - len(kept) / len(rows)
    print(f"pii: {len(rows)} items, masked {provider_rate:.2%} before the provider, {storage_rate:.2%} in storage")
    assert len(rows) >= 500 and peer.count("mm") == len(rows)
    assert provider_rate >= 0.99 and storage_rate >= 0.99
    secrets = [item for kind, item, _ in rows if kind in SECRETS]
    assert not [s for s in secrets if s in stored or json.dumps(s)[1:-1] in stored or s in traced]
    assert "[EMAIL]" in stored  # prompts were stored, masked


def test_block_policy_refuses_and_allow_policy_still_never_sends_secrets(
    peer: OpenAIPeer, engine: Engine, tmp_path: Path
) -> None:
    models = [deployment("mm", api_base=peer.api_base("mm"))]
    tenants = [
        tenant("blocky", policies={"pii": "block"}),
        tenant("open", policies={"pii": "allow", "store_prompts": True}),
    ]
    gateway = Gateway(write_config(tmp_path / "c", models, tenants, {"timeout_seconds": 5}), engine)
    with pytest.raises(GuardrailBlocked, match="the prompt contains email"):
        gateway.complete(request("blocky", "reach me at ann@example.com"))
    assert peer.count("mm") == 0

    key = "sk-proj-" + "a1B2" * 10
    result = gateway.complete(request("open", f"reach me at ann@example.com, key {key}"))
    gateway.close()
    assert "ann@example.com" in peer.bodies()[0] and key not in peer.bodies()[0]  # allowed PII went; the key did not
    assert result.guardrails["prompt"]["action"] == "masked"
    assert "ann@example.com" in result.content  # the echoed output was scanned: PII allowed, as the policy says
    stored = _everything_stored(engine)
    assert "ann@example.com" not in stored and key not in stored
    with engine.connect() as connection:
        decisions = [
            (e.payload["where"], e.payload["action"])
            for e in connection.execute(select(Event).where(Event.name == "guardrail").order_by(Event.seq))
        ]
    assert decisions == [("prompt", "blocked"), ("prompt", "masked"), ("output", "allowed")]


def test_spans_carry_genai_attributes_and_no_prompt_unless_allowed(
    peer: OpenAIPeer, engine: Engine, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    models = [deployment("mm", api_base=peer.api_base("mm"))]
    tenants = [tenant("quiet"), tenant("chatty", policies={"store_prompts": True})]
    gateway = Gateway(write_config(tmp_path / "c", models, tenants, {"timeout_seconds": 5}), engine)
    gateway.complete(request("quiet", "the launch code is banana", run_id="r-1", max_tokens=30))
    gateway.complete(request("chatty", "the launch code is banana"))
    gateway.close()
    quiet, chatty = spans.get_finished_spans()
    attributes = dict(quiet.attributes or {})
    assert quiet.name == "chat basic"
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.max_tokens"] == 30 and attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["agentprovision.tenant_id"] == "quiet" and attributes["agentprovision.run_id"] == "r-1"
    assert "banana" not in json.dumps(attributes)
    assert "banana" in str((chatty.attributes or {})["gen_ai.input.messages"])
