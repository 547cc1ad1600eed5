"""OpenAI wire format: OpenAI itself and every compatible server (vLLM, Ollama, llama.cpp, Groq, Together,
Azure OpenAI). The request body is the client's, passed through with `model` rewritten; the response body is
relayed as bytes. Only usage is parsed from it."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from hedgeway.errors import ConfigError, UpstreamError
from hedgeway.providers.base import StreamReply, redact, upstream_failure
from hedgeway.types import ChatRequest, Deployment, UpstreamReply, Usage
from hedgeway.upstream import Pool, Response

DEFAULT_BASE = "https://api.openai.com/v1"


def parse_usage(u: dict[str, Any] | None) -> Usage:
    if not u:
        return Usage()
    details = u.get("prompt_tokens_details") or {}
    return Usage(prompt_tokens=u.get("prompt_tokens") or 0, completion_tokens=u.get("completion_tokens") or 0,
                 cached_tokens=details.get("cached_tokens") or 0,
                 # LiteLLM-style upstreams give cache writes under Anthropic's name, at the top of usage
                 cache_write_tokens=details.get("cache_write_tokens") or u.get("cache_creation_input_tokens") or 0)


def error_detail(body: bytes) -> tuple[str, dict[str, str]]:
    """(message, the envelope's string `type` / `param` / `code`) of an OpenAI error body; a body that is
    not one gives its first 200 characters and no detail."""
    try:
        err = orjson.loads(body).get("error")
    except Exception:
        return body[:200].decode("utf-8", "replace"), {}
    if not isinstance(err, dict):
        return str(err), {}
    return str(err.get("message")), {k: err[k] for k in ("type", "param", "code") if isinstance(err.get(k), str)}


class OpenAIProvider:
    price_namespace: ClassVar[str] = "openai"

    @classmethod
    def validate_settings(cls, d: Any, path: str) -> dict[str, Any]:
        if d.settings:
            raise ConfigError(f"{path}.settings", f"the {d.provider} provider takes no settings")
        return {"default_api_base": DEFAULT_BASE}

    def __init__(self, deployment: Deployment):
        self.deployment = deployment
        self.pool = Pool(deployment.api_base, name=deployment.id)
        self.headers = self._headers(deployment).encode("latin-1")
        self.first_byte_timeout = deployment.first_byte_timeout or deployment.timeout

    def _headers(self, d: Deployment) -> str:
        lines = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "hedgeway"}
        if d.api_key:
            lines["Authorization"] = f"Bearer {d.api_key}"
        lines.update(d.headers)
        return "".join(f"{k}: {v}\r\n" for k, v in lines.items())

    def _path(self, endpoint: str) -> str:
        return f"/{endpoint}"

    async def _post(self, endpoint: str, body: dict[str, Any]) -> Response:
        d = self.deployment
        resp = await self.pool.request("POST", self._path(endpoint), self.headers, orjson.dumps(body),
                                       self.first_byte_timeout, d.timeout)
        if resp.status == 200:
            return resp
        text, detail = error_detail(await resp.read())
        raise upstream_failure(resp.status, redact(text, d.api_key), d.id, resp.headers.get("retry-after"), detail)

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body = dict(request.body)
        body["model"] = self.deployment.model
        return body

    async def _complete(self, endpoint: str, body: dict[str, Any]) -> UpstreamReply:
        raw = await (await self._post(endpoint, body)).read()
        try:
            usage = parse_usage(orjson.loads(raw).get("usage"))
        except (orjson.JSONDecodeError, AttributeError):
            raise UpstreamError("upstream returned invalid JSON", deployment=self.deployment.id) from None
        return UpstreamReply(body=raw, usage=usage)

    async def chat(self, request: ChatRequest) -> UpstreamReply:
        return await self._complete("chat/completions", self._body(request))

    async def stream(self, request: ChatRequest) -> StreamReply:
        body = self._body(request)
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        resp = await self._post("chat/completions", body)
        try:
            first = await resp.__anext__()
        except StopAsyncIteration:
            raise UpstreamError("upstream ended the stream before any event", deployment=self.deployment.id)
        return StreamReply(first, resp, resp.close)

    async def embeddings(self, body: dict[str, Any]) -> UpstreamReply:
        return await self._complete("embeddings", {**body, "model": self.deployment.model})

    def close(self) -> None:
        self.pool.close()


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: `{api_base}/openai/deployments/{model}/{endpoint}?api-version=…` with an `api-key`
    header. An `api_base` ending in `/openai/v1` uses Azure's OpenAI-compatible v1 paths instead."""

    @classmethod
    def validate_settings(cls, d: Any, path: str) -> dict[str, Any]:
        extra = set(d.settings) - {"api_version"}
        if extra:
            raise ConfigError(f"{path}.settings.{sorted(extra)[0]}", "unknown azure setting")
        if not d.api_base:
            raise ConfigError(f"{path}.api_base", "azure needs api_base (https://NAME.openai.azure.com)")
        if not d.api_base.rstrip("/").endswith("/openai/v1") and "api_version" not in d.settings:
            raise ConfigError(f"{path}.settings.api_version", "required for Azure deployment URLs")
        return dict(d.settings)

    def _headers(self, d: Deployment) -> str:
        lines = {"Content-Type": "application/json", "User-Agent": "hedgeway", "api-key": d.api_key,
                 **d.headers}
        return "".join(f"{k}: {v}\r\n" for k, v in lines.items() if v)

    def _path(self, endpoint: str) -> str:
        version = self.deployment.settings.get("api_version")
        if self.pool.base_path.endswith("/openai/v1"):
            return f"/{endpoint}" + (f"?api-version={version}" if version else "")
        return f"/openai/deployments/{self.deployment.model}/{endpoint}?api-version={version}"

