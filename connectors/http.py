"""The HTTP client every HTTP connector uses: allowed hosts, auth, retries and clear errors.

- Every request URL (including `next` links a service hands back) must be on the integration's
  allowed_hosts; plain http is refused except to loopback, so a credential never crosses the
  network unencrypted.
- 429 (and GitHub's 403 with an exhausted rate limit) waits for Retry-After, up to a cap; 5xx and
  network errors retry with exponential backoff; both are bounded by `RetryPolicy`.
- 401/403/404 and other refusals become typed ConnectorErrors that name the request path but
  never headers, query strings or bodies we sent (they may carry credentials).
"""

from __future__ import annotations

import base64
import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from connectors.errors import (
    AuthError,
    HostNotAllowed,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestRejected,
    ServiceError,
    Unreachable,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Tests use tiny backoffs; production keeps the defaults."""

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    timeout: float = 30.0

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))


@dataclass(frozen=True)
class BearerAuth:
    token: str

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        headers["Authorization"] = f"Bearer {self.token}"


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        raw = f"{self.username}:{self.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class ApiKeyAuth:
    key: str
    name: str = "X-API-Key"
    location: str = "header"  # header | query

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        if self.location == "query":
            params[self.name] = self.key
        else:
            headers[self.name] = self.key


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_allowed(url: str, allowed_hosts: tuple[str, ...] | list[str]) -> bool:
    """Exact host, `host:port`, or `*.suffix` entries; nothing is allowed by default."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for entry in allowed_hosts:
        entry = entry.lower()
        if entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif ":" in entry and not entry.startswith("["):
            if f"{host}:{parts.port}" == entry:
                return True
        elif host == entry:
            return True
    return False


class HttpClient:
    """A small synchronous client bound to one integration; use as a context manager or call close()."""

    def __init__(
        self,
        *,
        integration: str,
        base_url: str,
        allowed_hosts: tuple[str, ...] | list[str],
        auth: Any = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        credential_ref: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.integration = integration
        self.base_url = base_url.rstrip("/") + "/"
        self.allowed_hosts = tuple(allowed_hosts)
        self.auth = auth
        self.retry = retry or RetryPolicy()
        self.credential_ref = credential_ref
        self.sleep = sleep
        # Redirects are not followed: a redirect to another host would bypass allowed_hosts.
        self._client = httpx.Client(
            timeout=self.retry.timeout, follow_redirects=False, headers=dict(headers or {}), trust_env=False
        )
        self.retries = 0  # how many retries this client made, for sync history and tests

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return urljoin(self.base_url, path_or_url.lstrip("/"))

    def _guard(self, url: str) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if not host_allowed(url, self.allowed_hosts):
            allowed = ", ".join(self.allowed_hosts) or "none"
            raise HostNotAllowed(f"host {host!r} is not in allowed_hosts ({allowed})", integration=self.integration)
        if parts.scheme != "https" and not is_loopback(host):
            raise HostNotAllowed(
                f"plain {parts.scheme}:// to {host!r} is refused: credentials must travel over https",
                hint="use an https:// base_url",
                integration=self.integration,
            )

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        url = self.url(path_or_url)
        self._guard(url)
        shown = f"{method} {urlsplit(url).path}"  # never the query string: API keys may travel there
        headers: dict[str, str] = {}
        query: dict[str, Any] = {k: v for k, v in (params or {}).items() if v is not None}
        if self.auth is not None:
            self.auth.apply(headers, query)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._client.request(method, url, params=query or None, json=json, headers=headers)
            except httpx.TimeoutException:
                problem = f"{shown} timed out after {self.retry.timeout:g}s"
            except httpx.TransportError as exc:
                problem = f"{shown} could not connect to {urlsplit(url).hostname}: {type(exc).__name__}"
            else:
                if response.is_success:
                    return response
                wait = self._retry_wait(response, attempt, shown)
                if wait is None:
                    raise self._refusal(response, shown)
                if attempt >= self.retry.max_attempts:
                    raise self._exhausted(response, shown, attempt)
                self.retries += 1
                self.sleep(wait)
                continue
            if attempt >= self.retry.max_attempts:
                raise Unreachable(f"{problem} ({attempt} attempts)", integration=self.integration)
            self.retries += 1
            self.sleep(self.retry.backoff(attempt))

    def get_json(self, path_or_url: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self.json_of(self.request("GET", path_or_url, params=params))

    def json_of(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            start = response.text[:40].replace("\n", " ")
            raise MalformedResponse(
                f"{response.request.method} {response.request.url.path} answered {response.status_code} "
                f"with a body that is not JSON (starts {start!r})",
                integration=self.integration,
            ) from None

    # --- status handling --------------------------------------------------------------------------

    def _retry_wait(self, response: httpx.Response, attempt: int, shown: str) -> float | None:
        """Seconds to wait before retrying, or None when retrying cannot help."""
        status = response.status_code
        rate_limited = status == 429 or (status == 403 and response.headers.get("x-ratelimit-remaining") == "0")
        if rate_limited:
            wait = retry_after_seconds(response)
            if wait is None:
                wait = self.retry.backoff(attempt)
            if wait > self.retry.max_retry_after:
                raise RateLimited(
                    f"{shown} is rate limited for {wait:.0f}s, longer than the {self.retry.max_retry_after:.0f}s "
                    "we wait",
                    integration=self.integration,
                )
            return wait
        if status >= 500 or status == 408:
            return self.retry.backoff(attempt)
        return None

    def _refusal(self, response: httpx.Response, shown: str) -> Exception:
        status = response.status_code
        credential = f" (credential {self.credential_ref})" if self.credential_ref else ""
        if status == 401:
            return AuthError(f"{shown} answered 401 Unauthorized{credential}", integration=self.integration)
        if status == 403:
            return PermissionDenied(f"{shown} answered 403 Forbidden{credential}", integration=self.integration)
        if status == 404:
            return NotFound(f"{shown} answered 404 Not Found", integration=self.integration)
        return RequestRejected(f"{shown} answered {status}: {_service_message(response)}", integration=self.integration)

    def _exhausted(self, response: httpx.Response, shown: str, attempts: int) -> Exception:
        if response.status_code in (429, 403):
            return RateLimited(
                f"{shown} was still rate limited after {attempts} attempts", integration=self.integration
            )
        return ServiceError(
            f"{shown} answered {response.status_code} on all {attempts} attempts", integration=self.integration
        )


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """Retry-After as seconds (delta or HTTP date), or GitHub's x-ratelimit-reset epoch; None if absent."""
    value = response.headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        return max(0.0, when - (now if now is not None else time.time()))
    reset = response.headers.get("x-ratelimit-reset")
    if reset and reset.isdigit():
        return max(0.0, float(reset) - (now if now is not None else time.time()))
    return None


def _service_message(response: httpx.Response) -> str:
    """The service's own short explanation, if it gave one; bodies are cut short."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no explanation given"
    if isinstance(body, dict):
        for key in ("message", "error", "errorMessages", "detail"):
            if body.get(key):
                text = body[key] if isinstance(body[key], str) else "; ".join(map(str, body[key]))
                return text[:200]
    return response.reason_phrase or "no explanation given"
