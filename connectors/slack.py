"""Slack: read one channel's messages (conversations.history) and `post_message` for agents.

Slack answers most failures with HTTP 200 and `{"ok": false, "error": "..."}`; those codes are
mapped to the same typed errors as HTTP statuses. History comes newest first, so the cursor (the
newest `ts` seen) is committed only once the whole channel page chain is read; a failure midway
re-reads from the previous cursor and duplicates are removed by `ts`. A channel given by name
(`#kpi`) is resolved to its id through conversations.list.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from connectors.errors import (
    AuthError,
    ConnectorError,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestRejected,
)
from connectors.http import BearerAuth, HttpClient
from connectors.rest import stream_schema
from connectors.sdk import Action, Batch, Connector, ConnectorSettings, CredentialSpec, Stream, records_to_table

MESSAGE_FIELDS = {
    "ts": "string",
    "channel": "string",
    "user": "string",
    "text": "string",
    "type": "string",
    "subtype": "string",
    "thread_ts": "string",
}
ERRORS: dict[str, type[ConnectorError]] = {
    "invalid_auth": AuthError,
    "not_authed": AuthError,
    "token_revoked": AuthError,
    "token_expired": AuthError,
    "account_inactive": AuthError,
    "channel_not_found": NotFound,
    "not_in_channel": PermissionDenied,
    "missing_scope": PermissionDenied,
    "ratelimited": RateLimited,
}


class SlackSettings(ConnectorSettings):
    channel: str = Field(pattern=r"^(#[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{6,})$", description="#name or id")
    base_url: str = Field(default="https://slack.com/api", pattern=r"^https?://[^\s/]+")
    page_size: int = Field(default=200, ge=1, le=999)


class PostMessage(BaseModel):
    text: str = Field(min_length=1, max_length=40_000)
    thread_ts: str | None = None


class SlackConnector(Connector):
    kind = "slack"
    description = "Slack channel messages; post_message."
    Settings = SlackSettings
    credential = CredentialSpec(required=True, description="a bot token with channels:history and chat:write")

    settings: SlackSettings

    def __init__(self, settings: Any, context: Any):
        super().__init__(settings, context)
        self._channel_id: str | None = None

    @classmethod
    def stream_names(cls, settings: SlackSettings) -> list[str]:  # type: ignore[override]
        return ["messages"]

    @classmethod
    def hosts(cls, settings: SlackSettings) -> list[str]:  # type: ignore[override]
        return [settings.base_url]

    def client(self) -> HttpClient:
        return self.context.http(self.settings.base_url, auth=BearerAuth(self.context.secret or ""))

    def call(self, client: HttpClient, method: str, *, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        if body is None:
            response = client.request("GET", method, params=params)
        else:
            response = client.request("POST", method, json=body)
        answer = client.json_of(response)
        if not isinstance(answer, dict) or "ok" not in answer:
            raise MalformedResponse(f"{method} did not answer a Slack API object")
        if not answer["ok"]:
            code = str(answer.get("error", "unknown_error"))
            raise ERRORS.get(code, RequestRejected)(f"{method} failed: {code}")
        return answer

    def streams(self) -> list[Stream]:
        return [Stream("messages", ("ts",), stream_schema(MESSAGE_FIELDS, ["ts"]), cursor_field="ts")]

    def check(self) -> None:
        with self.client() as client:
            self.call(client, "auth.test")
            self.channel_id(client)

    def channel_id(self, client: HttpClient) -> str:
        if self._channel_id:
            return self._channel_id
        channel = self.settings.channel
        if not channel.startswith("#"):
            self._channel_id = channel
            return channel
        params: dict[str, Any] = {"types": "public_channel,private_channel", "limit": 200, "exclude_archived": True}
        while True:
            answer = self.call(client, "conversations.list", params=params)
            for item in answer.get("channels") or []:
                if item.get("name") == channel[1:]:
                    self._channel_id = str(item["id"])
                    return self._channel_id
            token = (answer.get("response_metadata") or {}).get("next_cursor")
            if not token:
                raise NotFound(f"channel {channel} does not exist or the bot cannot see it")
            params["cursor"] = token

    def read(self, stream: Stream, cursor: dict[str, Any] | None) -> Iterator[Batch]:
        saved = (cursor or {}).get("value")
        newest = saved
        with self.client() as client:
            channel = self.channel_id(client)
            params: dict[str, Any] = {"channel": channel, "limit": self.settings.page_size}
            if saved:
                params["oldest"] = saved  # exclusive by default
            for number in range(1, 10_001):
                answer = self.call(client, "conversations.history", params=params)
                messages = answer.get("messages")
                if not isinstance(messages, list):
                    raise MalformedResponse(f"conversations.history page {number} has no messages list")
                rows = [{**m, "channel": channel} for m in messages if isinstance(m, dict)]
                for row in rows:
                    if row.get("ts") and (newest is None or Decimal(row["ts"]) > Decimal(newest)):
                        newest = row["ts"]
                yield Batch(records_to_table(stream, rows, where=f"page {number}"))
                token = (answer.get("response_metadata") or {}).get("next_cursor")
                if not answer.get("has_more") or not token:
                    break
                params["cursor"] = token
        if newest is not None and newest != saved:
            yield Batch(records_to_table(stream, []), {"value": newest})

    def actions(self) -> dict[str, Action]:
        return {"post_message": Action("post_message", "Post a message to the channel.", PostMessage, self._post)}

    def _post(self, params: PostMessage) -> dict[str, Any]:
        with self.client() as client:
            body: dict[str, Any] = {"channel": self.channel_id(client), "text": params.text}
            if params.thread_ts:
                body["thread_ts"] = params.thread_ts
            answer = self.call(client, "chat.postMessage", body=body)
        return {"channel": answer.get("channel"), "ts": answer.get("ts")}
