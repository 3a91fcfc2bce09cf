"""Personal data and secrets in prompts and outputs: find them, then mask, block or allow.

Detection is pattern plus checksum where one exists (Luhn for payment cards, mod-97 for IBANs,
the control letter of a Spanish DNI, the reserved ranges of a US SSN), so ordinary numbers are
not mistaken for cards. Secrets are never allowed through as they are: a tenant may choose to
block or mask them, not to send them. Whatever is stored is always the masked text, whatever the
policy said about sending.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from agentprovision.config.schema import TenantPolicies

Kind = Literal["private_key", "api_key", "iban", "payment_card", "national_id", "email", "phone"]
SECRET_KINDS: frozenset[str] = frozenset({"private_key", "api_key"})
PLACEHOLDER = {
    "private_key": "[PRIVATE_KEY]",
    "api_key": "[API_KEY]",
    "iban": "[IBAN]",
    "payment_card": "[CARD]",
    "national_id": "[NATIONAL_ID]",
    "email": "[EMAIL]",
    "phone": "[PHONE]",
}


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    iban = candidate.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return int(numeric) % 97 == 1


def _card_ok(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def _national_id_ok(match: str) -> bool:
    compact = match.replace(" ", "").upper()
    if re.fullmatch(r"\d{8}[A-Z]", compact):  # Spanish DNI: the letter is a checksum
        return DNI_LETTERS[int(compact[:8]) % 23] == compact[8]
    return True  # SSN and NINO validity is in the pattern itself


@dataclass(frozen=True)
class Detector:
    kind: Kind
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] | None = None
    # What any match must contain: a text without it is not searched at all (most prompts have no '@',
    # many no digit), which halves the cost of a scan.
    needs_digit: bool = False
    needs_text: str | None = None


# Order matters: earlier detectors win where matches overlap (a key can contain digits that look
# like a phone number; an IBAN contains digit runs).
DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*)", re.S
        ),
        needs_text="-----BEGIN ",
    ),
    Detector(
        "api_key",
        re.compile(
            r"\bsk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{16,}"
            r"|\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"
            r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
            r"|\bgh[pousr]_[A-Za-z0-9]{30,}"
            r"|\bgithub_pat_[A-Za-z0-9_]{40,}"
            r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
            r"|\bAIza[0-9A-Za-z_-]{35}"
            r"|\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"
            r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]{20,}"
            r"|(?i:\b(?:api[_-]?key|secret|token|password|passwd)\b\s*[:=]\s*)[\"']?[^\s\"']{12,}"
        ),
    ),
    Detector(
        "iban",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
        iban_ok,
        needs_digit=True,
    ),
    Detector("payment_card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card_ok, needs_digit=True),
    Detector(
        "national_id",
        re.compile(
            r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"  # US SSN
            r"|\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"  # UK NINO
            r"|\b\d{8}[A-HJ-NP-TV-Z]\b"  # Spanish DNI
        ),
        _national_id_ok,
        needs_digit=True,
    ),
    Detector(
        "email",
        re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
        needs_text="@",
    ),
    Detector(
        "phone",
        re.compile(
            r"(?<![\w+])\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}(?!\w)"  # international
            r"|(?<![\w+])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?!\w)"  # North American
            r"|(?<![\w+])0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}(?!\w)"  # national trunk prefix
        ),
        needs_digit=True,
    ),
)
_DIGIT = re.compile(r"\d")


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


def find(text: str) -> list[Finding]:
    """Every personal-data or secret span in `text`, without overlaps, in order."""
    if not text:
        return []
    taken: list[Finding] = []
    has_digit = _DIGIT.search(text) is not None
    for detector in DETECTORS:
        if (detector.needs_digit and not has_digit) or (detector.needs_text and detector.needs_text not in text):
            continue
        for match in detector.pattern.finditer(text):
            start, end = match.span()
            if any(start < f.end and f.start < end for f in taken):
                continue
            if detector.valid is not None and not detector.valid(match.group()):
                continue
            taken.append(Finding(detector.kind, start, end))
    taken.sort(key=lambda f: f.start)
    return taken


def mask(text: str, findings: list[Finding] | None = None, kinds: frozenset[str] | None = None) -> str:
    """`text` with each finding (of `kinds`, default all) replaced by a placeholder naming its kind."""
    spans = find(text) if findings is None else findings
    out, cursor = [], 0
    for finding in spans:
        if kinds is not None and finding.kind not in kinds:
            continue
        out.append(text[cursor : finding.start])
        out.append(PLACEHOLDER[finding.kind])
        cursor = finding.end
    out.append(text[cursor:])
    return "".join(out)


@dataclass
class ScanOutcome:
    """What a scan found and did; `action` is the decision recorded as a policy event."""

    where: str  # "prompt" or "output"
    action: str  # "clean", "allowed", "masked" or "blocked"
    counts: Counter[str] = field(default_factory=Counter)
    messages: list[dict[str, Any]] = field(default_factory=list)  # what may be sent or returned

    @property
    def kinds(self) -> list[str]:
        return sorted(self.counts)

    def summary(self) -> dict[str, Any]:
        return {"where": self.where, "action": self.action, "found": dict(sorted(self.counts.items()))}


def decide(counts: Counter[str], policies: TenantPolicies) -> tuple[str, frozenset[str]]:
    """The action for what was found, and which kinds to mask before sending."""
    if not counts:
        return "clean", frozenset()
    secrets = {k for k in counts if k in SECRET_KINDS}
    personal = {k for k in counts if k not in SECRET_KINDS}
    if (secrets and policies.secrets == "block") or (personal and policies.pii == "block"):
        return "blocked", frozenset()
    to_mask = set(secrets)
    if policies.pii == "mask":
        to_mask |= personal
    if to_mask:
        return "masked", frozenset(to_mask)
    return "allowed", frozenset()


def scan_messages(messages: list[dict[str, Any]], policies: TenantPolicies, where: str = "prompt") -> ScanOutcome:
    counts: Counter[str] = Counter()
    map_texts(messages, lambda text: _count(text, counts))
    action, to_mask = decide(counts, policies)
    sent = map_texts(messages, lambda text: mask(text, kinds=to_mask)) if action == "masked" else messages
    return ScanOutcome(where, action, counts, sent)


def _count(text: str, counts: Counter[str]) -> str:
    counts.update(f.kind for f in find(text))
    return text


def map_texts(messages: list[dict[str, Any]], fn: Callable[[str], str]) -> list[dict[str, Any]]:
    """Apply `fn` to every piece of text in OpenAI-format messages (content, parts, tool arguments)."""
    result = []
    for message in messages:
        copy = dict(message)
        content = message.get("content")
        if isinstance(content, str):
            copy["content"] = fn(content)
        elif isinstance(content, list):
            copy["content"] = [
                {**part, "text": fn(part["text"])}
                if isinstance(part, dict) and isinstance(part.get("text"), str)
                else part
                for part in content
            ]
        if message.get("tool_calls"):
            copy["tool_calls"] = [_map_tool_call(call, fn) for call in message["tool_calls"]]
        result.append(copy)
    return result


def _map_tool_call(call: dict[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        return call
    return {**call, "function": {**function, "arguments": fn(arguments)}}


def masked_for_storage(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every finding masked, whatever the tenant allowed to be sent: storage never holds them."""
    return map_texts(messages, mask)
