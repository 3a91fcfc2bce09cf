"""Fine-tuning support: curated training data out of a tenant's runs, and a job that uses it.

Export. A run becomes one training example when it succeeded and every approval it asked for was
granted (a rejected or still-pending approval means a person disagreed with what the agent did,
which is not behaviour to teach). Its transcript (the runtime's checkpointed messages, in OpenAI
chat format) is reduced to what the fine-tuning API accepts, every text (message content, tool
results, tool-call arguments) is masked by the gateway's guardrail detectors, whatever the tenant
allows to be *sent*, and runs that end without an assistant answer are skipped. The output is
OpenAI's chat fine-tuning JSONL: one `{"messages": [...], "tools": [...]}` object per line.

Submit. The file is checked again (it may have been edited since the export), uploaded and a job
created through LiteLLM (`litellm.create_file`, `litellm.create_fine_tuning_job`), with the
provider key from the environment. When the job has succeeded its model is registered for the
tenant as a deployment in the config directory's models.yaml, with `model_info.tenant` set, which
is how the config schema models a tenant's own fine-tuned model: routing offers it to that tenant
only. The config stays the one source of truth, so the new entry is validated with the rest of the
config at once and takes effect with the next `agentprovision apply`, versioned like any change.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from agentprovision.config import load_config_dir
from agentprovision.config.loader import MODELS_FILE
from agentprovision.store.agent_models import AgentApproval
from agentprovision.store.db import session_factory
from agentprovision.store.models import Run
from agents.gateway import guardrails
from governance.tenancy import tenant_session

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROLES = ("system", "user", "assistant", "tool")
TERMINAL_JOB_STATES = ("succeeded", "failed", "cancelled")
DEFAULT_KEY_ENV = "OPENAI_API_KEY"


class FineTuneError(Exception):
    """An expected failure (no data, no key, bad file, failed job); the message says what to do."""


@dataclass
class ExportReport:
    tenant_id: str
    path: Path
    runs_considered: int = 0
    examples: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    masked: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
        masked = ", ".join(f"{n} {kind}" for kind, n in sorted(self.masked.items())) or "nothing"
        return (
            f"{self.examples} training examples from {self.runs_considered} succeeded runs of {self.tenant_id} "
            f"written to {self.path} (skipped: {skipped}; masked: {masked})"
        )


# --- where transcripts come from ------------------------------------------------------------------


def run_transcript(session: Any, run_id: str) -> list[dict[str, Any]]:
    """One run's messages in OpenAI chat format. The runtime owns how they are stored; this is the seam."""
    from agents.runtime import transcript

    return transcript(session, run_id)


# --- export ---------------------------------------------------------------------------------------


def export_training_data(
    engine: Engine,
    tenant_id: str,
    out: Path,
    *,
    agent_id: str | None = None,
    since: datetime | None = None,
    tool_specs: dict[str, dict[str, Any]] | None = None,
) -> ExportReport:
    """Write the tenant's curated examples to `out` (JSONL) and say what was kept, skipped and masked."""
    report = ExportReport(tenant_id, out)
    specs = tool_specs if tool_specs is not None else _tool_specs()
    lines: list[str] = []
    seen: set[str] = set()
    with tenant_session(session_factory(engine), tenant_id) as session:
        query = select(Run).where(Run.tenant_id == tenant_id, Run.status == "succeeded").order_by(Run.started_at)
        if agent_id:
            query = query.where(Run.agent_id == agent_id)
        if since:
            query = query.where(Run.started_at >= since)
        runs = list(session.scalars(query))
        approvals: dict[str, set[str]] = {}
        for approval in session.scalars(select(AgentApproval).where(AgentApproval.tenant_id == tenant_id)):
            approvals.setdefault(approval.run_id, set()).add(approval.status)
        report.runs_considered = len(runs)
        for run in runs:
            decided = approvals.get(run.run_id, set())
            if decided - {"approved"}:
                report.skipped["with an unapproved action"] += 1
                continue
            messages, why = training_messages(run_transcript(session, run.run_id), report.masked)
            if messages is None:
                report.skipped[why] += 1
                continue
            example: dict[str, Any] = {"messages": messages}
            used = sorted({c["function"]["name"] for m in messages for c in m.get("tool_calls") or []})
            if used:
                example["tools"] = [specs[name] for name in used if name in specs]
            line = json.dumps(example, ensure_ascii=False, sort_keys=True)
            digest = hashlib.sha256(line.encode()).hexdigest()
            if digest in seen:
                report.skipped["duplicates"] += 1
                continue
            seen.add(digest)
            lines.append(line)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(out.name + ".partial")
    staging.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    staging.replace(out)  # a reader never sees half a file
    report.examples = len(lines)
    return report


def training_messages(
    transcript: list[dict[str, Any]], masked: Counter[str]
) -> tuple[list[dict[str, Any]] | None, str]:
    """The transcript as fine-tuning messages, personal data and secrets masked; (None, reason) if unusable."""
    messages = [m for m in (_clean(message) for message in transcript) if m is not None]
    if not any(m["role"] == "user" for m in messages):
        return None, "without a user message"
    while messages and messages[-1]["role"] != "assistant":
        messages.pop()  # trailing tool results or prompts teach nothing without the answer after them
    if not messages or not messages[-1].get("content"):
        return None, "without a final answer"
    _answered_calls_only(messages)
    for text in _texts(messages):
        masked.update(f.kind for f in guardrails.find(text))
    return guardrails.masked_for_storage(messages), ""


def _clean(message: dict[str, Any]) -> dict[str, Any] | None:
    role = message.get("role")
    if role not in ROLES:
        return None
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text
        content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    clean: dict[str, Any] = {"role": role, "content": content if isinstance(content, str) else None}
    if role == "assistant" and message.get("tool_calls"):
        calls = []
        for call in message["tool_calls"]:
            function = call.get("function") or {}
            arguments = function.get("arguments")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments or {}, sort_keys=True)
            calls.append(
                {
                    "id": str(call.get("id")),
                    "type": "function",
                    "function": {"name": str(function.get("name")), "arguments": arguments},
                }
            )
        clean["tool_calls"] = calls
    if role == "tool":
        clean["tool_call_id"] = str(message.get("tool_call_id"))
        clean["content"] = clean["content"] or ""
    if role != "assistant" and clean["content"] is None:
        return None
    return clean


def _answered_calls_only(messages: list[dict[str, Any]]) -> None:
    """Drop tool results whose call is not in the example (the API rejects dangling tool messages)."""
    called = {c["id"] for m in messages for c in m.get("tool_calls") or []}
    messages[:] = [m for m in messages if m["role"] != "tool" or m["tool_call_id"] in called]


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    texts = [m["content"] for m in messages if isinstance(m.get("content"), str)]
    texts += [c["function"]["arguments"] for m in messages for c in m.get("tool_calls") or []]
    return texts


def _tool_specs() -> dict[str, dict[str, Any]]:
    """OpenAI function definitions of the installed tools, for examples that call them."""
    from agents.tools import load_tools

    return {
        name: {
            "type": "function",
            "function": {"name": name, "description": tool.description, "parameters": tool.parameters},
        }
        for name, tool in load_tools().items()
    }


# --- checking a training file ---------------------------------------------------------------------


def check_training_file(path: Path) -> int:
    """Number of examples in a fine-tuning JSONL file; FineTuneError naming the first problem."""
    if not path.is_file():
        raise FineTuneError(f"{path} does not exist; write it with `agentprovision finetune export`")
    count = 0
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                example = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FineTuneError(f"{path}:{number}: not JSON ({exc.msg})") from None
            messages = example.get("messages") if isinstance(example, dict) else None
            if not isinstance(messages, list) or not messages:
                raise FineTuneError(f"{path}:{number}: each line needs a non-empty `messages` list")
            if any(not isinstance(m, dict) or m.get("role") not in ROLES for m in messages):
                raise FineTuneError(f"{path}:{number}: every message needs a role of {', '.join(ROLES)}")
            if messages[-1].get("role") != "assistant":
                raise FineTuneError(f"{path}:{number}: the last message must be the assistant's")
            found = Counter(f.kind for text in _texts(messages) for f in guardrails.find(text))
            if found:
                kinds = ", ".join(f"{n} {k}" for k, n in sorted(found.items()))
                raise FineTuneError(
                    f"{path}:{number}: personal data or secrets in the file ({kinds}); export it again rather "
                    "than editing it by hand"
                )
            count += 1
    if not count:
        raise FineTuneError(f"{path} holds no examples; nothing to train on")
    return count


# --- submitting a job and registering its model ---------------------------------------------------


@dataclass(frozen=True)
class Provider:
    """Where jobs go: OpenAI's API (or one compatible with it) and the environment variable with its key."""

    key_env: str = DEFAULT_KEY_ENV
    api_base: str | None = None

    def key(self) -> str:
        value = os.environ.get(self.key_env)
        if not value:
            raise FineTuneError(
                f"no provider key is configured: set {self.key_env} to submit fine-tuning jobs "
                "(the sandbox provider cannot fine-tune)"
            )
        return value

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"custom_llm_provider": "openai", "api_key": self.key()}
        base = self.api_base or os.environ.get("OPENAI_API_BASE") or os.environ.get("OPENAI_BASE_URL")
        if base:
            params["api_base"] = base
        return params


@dataclass(frozen=True)
class Job:
    job_id: str
    status: str
    base_model: str
    fine_tuned_model: str | None
    training_file: str | None = None
    error: str | None = None


def submit_job(path: Path, base_model: str, tenant_id: str, provider: Provider) -> Job:
    """Upload the training file and create the job; returns it as the provider reported it."""
    import litellm

    check_training_file(path)
    params = provider.params()
    try:
        with path.open("rb") as handle:
            uploaded = litellm.create_file(file=handle, purpose="fine-tune", **params)
        created = litellm.create_fine_tuning_job(
            model=base_model, training_file=uploaded.id, suffix=tenant_id[:18], **params
        )
    except Exception as exc:
        raise FineTuneError(f"the provider refused the fine-tuning job: {_provider_message(exc, provider)}") from None
    return _job(created)


def job_status(job_id: str, provider: Provider) -> Job:
    import litellm

    try:
        return _job(litellm.retrieve_fine_tuning_job(fine_tuning_job_id=job_id, **provider.params()))
    except Exception as exc:
        raise FineTuneError(f"cannot read fine-tuning job {job_id}: {_provider_message(exc, provider)}") from None


def _job(response: Any) -> Job:
    error = getattr(response, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    return Job(
        job_id=response.id,
        status=response.status,
        base_model=response.model,
        fine_tuned_model=getattr(response, "fine_tuned_model", None),
        training_file=getattr(response, "training_file", None),
        error=message,
    )


def _provider_message(exc: Exception, provider: Provider) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    key = os.environ.get(provider.key_env)
    return text.replace(key, "[redacted]") if key else text


def register_model(
    config_dir: Path,
    tenant_id: str,
    job: Job,
    provider: Provider,
    *,
    model_name: str | None = None,
    tier: str = "standard",
    context_window: int = 128_000,
) -> str:
    """Add the job's model to models.yaml for this tenant; returns the deployment id.

    Appends a block of YAML (the file's comments and layout stay as they are), then loads the whole
    config: if anything fails validation the file is put back and the problems are reported.
    Registering the same model twice changes nothing.
    """
    if job.status != "succeeded" or not job.fine_tuned_model:
        raise FineTuneError(f"job {job.job_id} is {job.status}; only a succeeded job has a model to register")
    loaded = load_config_dir(config_dir)
    if not loaded.ok or loaded.config is None:
        first = loaded.issues[0] if loaded.issues else None
        raise FineTuneError(f"the config in {config_dir} does not validate now ({first}); fix it first")
    config = loaded.config
    litellm_model = f"openai/{job.fine_tuned_model}"
    for entry in config.models.model_list:
        if entry.litellm_params.model == litellm_model:
            return entry.model_info.id
    try:
        tenant = config.tenant(tenant_id).tenant
    except KeyError:
        raise FineTuneError(f"tenant {tenant_id!r} is not in the config") from None
    suffix = hashlib.sha256(job.fine_tuned_model.encode()).hexdigest()[:8]
    deployment_id = f"{tenant_id}-ft-{suffix}"[:63]
    params: dict[str, Any] = {"model": litellm_model, "api_key": f"${{{provider.key_env}}}"}
    if provider.api_base:
        params["api_base"] = provider.api_base
    entry = {
        "model_name": model_name or f"{tenant_id}-fine-tuned",
        "litellm_params": params,
        "model_info": {
            "id": deployment_id,
            "tier": tier,
            "regions": [tenant.region],
            "context_window": context_window,
            "tenant": tenant_id,
            "base_model": _priced_base(job.base_model),
        },
    }
    path = config_dir / MODELS_FILE
    original = path.read_text(encoding="utf-8")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    block = (
        f"  # Fine-tuned for {tenant_id} from {job.base_model} (job {job.job_id}), registered {stamp} by "
        f"`agentprovision finetune`.\n" + _yaml_item(entry)
    )
    path.write_text(original.rstrip("\n") + "\n" + block, encoding="utf-8")
    after = load_config_dir(config_dir)
    if not after.ok:
        path.write_text(original, encoding="utf-8")
        problems = "; ".join(str(issue) for issue in after.issues[:3])
        raise FineTuneError(f"the fine-tuned model could not be registered, models.yaml is unchanged: {problems}")
    return deployment_id


def _priced_base(base_model: str) -> str:
    """LiteLLM's price-map name of the fine-tuned variant when it has one (fine-tuned models cost more)."""
    import litellm

    base = re.sub(r"^openai/", "", base_model)
    try:
        litellm.get_model_info(f"ft:{base}")
        return f"ft:{base}"
    except Exception:  # LiteLLM raises a bare Exception for models it does not know
        return base


def _yaml_item(entry: dict[str, Any]) -> str:
    """One model_list item in the file's own two-space style; JSON-quoted scalars are valid YAML."""
    lines = [f"  - model_name: {json.dumps(entry['model_name'])}"]
    for section in ("litellm_params", "model_info"):
        lines.append(f"    {section}:")
        for key, value in entry[section].items():
            lines.append(f"      {key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"
