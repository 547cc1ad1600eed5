"""Google Gemini API (generativelanguage, `POST {api_base}/{api_version}/models/{model}:generateContent`,
`:streamGenerateContent?alt=sse`, `:batchEmbedContents`) behind the OpenAI interface. Requests are
translated OpenAI → Gemini here; answers and streams Gemini → OpenAI in `gemini_stream`. The key travels in
the `x-goog-api-key` header, never in the URL (URLs end up in logs).

- `system`/`developer` → `systemInstruction`; user → `user`, assistant → `model`, tool → `user` turn of
  `functionResponse` parts (name found from the earlier call's id; a non-object result is wrapped as
  `{"result": …}`); consecutive same-role turns are merged.
- parts: text; `image_url` (data: URL → inlineData, http(s) → fileData with a guessed mimeType);
  `input_audio` → inlineData; assistant `tool_calls` → `functionCall` parts.
- `tools` → one `functionDeclarations` tool (schema keywords Gemini rejects are dropped); `tool_choice` →
  `toolConfig.functionCallingConfig`; temperature, top_p, max(_completion)_tokens, stop, n, seed,
  presence/frequency penalties and JSON `response_format` → `generationConfig`.
- Fields that would change the answer with no Gemini equivalent (`logprobs`, `logit_bias`, audio output)
  raise InvalidRequest (400) before any upstream call; delivery/billing-only fields are ignored.
"""

from __future__ import annotations

import mimetypes
from typing import Any, Callable, ClassVar
from urllib.parse import quote

import orjson

from hedgeway.errors import InvalidRequest, UpstreamError
from hedgeway.providers.base import StreamReply, check_settings, header_block, redact
from hedgeway.providers.gemini_stream import StreamTranslator, completion, gemini_failure
from hedgeway.types import ChatRequest, Deployment, UpstreamReply, Usage
from hedgeway.upstream import Pool, Response
from hedgeway.wire import embedding

DEFAULT_BASE = "https://generativelanguage.googleapis.com"
API_VERSIONS = ("v1beta", "v1", "v1alpha")
PLACEHOLDER = {"role": "user", "parts": [{"text": "."}]}  # Gemini refuses empty `contents`

SETTINGS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "api_version": (lambda v: v in API_VERSIONS, f"one of {', '.join(API_VERSIONS)}"),
    "safety_settings": (lambda v: isinstance(v, list) and all(isinstance(s, dict) and {"category", "threshold"}
                                                             <= s.keys() for s in v),
                        "a list of {category, threshold} mappings (Gemini safetySettings)"),
}

UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "logprobs": bool, "top_logprobs": bool, "logit_bias": bool, "audio": lambda v: v is not None,
    "modalities": lambda v: bool(v) and any(m != "text" for m in v),
}
CHOICE = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# OpenAI field -> generationConfig field, copied when not None
GENERATION = {"temperature": "temperature", "top_p": "topP", "n": "candidateCount", "seed": "seed",
              "presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty"}
# JSON Schema keywords Gemini's OpenAPI-subset `Schema` rejects with "Unknown name … Cannot find field"
SCHEMA_DROP = frozenset({"$schema", "$id", "$comment", "additionalProperties", "propertyNames"})
AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mp3"}


def _at(i: int, k: int) -> str:
    return f"messages[{i}].content[{k}]"


def _image(part: dict[str, Any], i: int, k: int) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if isinstance(url, str) and url.startswith("data:"):
        header, _, data = url.partition(",")
        mime, _, encoding = header[5:].partition(";")
        if encoding == "base64" and data:
            return {"inlineData": {"mimeType": mime or "image/png", "data": data}}
    elif isinstance(url, str) and url.startswith(("https://", "http://")):
        mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
        return {"fileData": {"fileUri": url, "mimeType": mime}}
    raise InvalidRequest(f"{_at(i, k)}: image URLs must be base64 data: URLs or http(s) URLs", param=_at(i, k))


def _audio(part: dict[str, Any], i: int, k: int) -> dict[str, Any]:
    audio = part.get("input_audio") or {}
    mime = AUDIO_MIME.get(audio.get("format"))
    if not mime or not audio.get("data"):
        raise InvalidRequest(f"{_at(i, k)}.input_audio needs data and format wav or mp3", param=_at(i, k))
    return {"inlineData": {"mimeType": mime, "data": audio["data"]}}


def _text(part: dict[str, Any], i: int, k: int) -> dict[str, Any] | None:
    text = part.get("text", part.get("refusal"))
    if not isinstance(text, str):
        raise InvalidRequest(f"{_at(i, k)}.text must be a string", param=_at(i, k))
    return {"text": text} if text else None


PARTS = {"text": _text, "refusal": _text, "image_url": _image, "input_audio": _audio}


def _parts(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise InvalidRequest(f"messages[{i}].content must be a string or an array of content parts",
                             param=f"messages[{i}].content")
    out = []
    for k, part in enumerate(content):
        convert = PARTS.get(part.get("type")) if isinstance(part, dict) else None
        if convert is None:
            raise InvalidRequest(f"{_at(i, k)}: content part type {part.get('type') if isinstance(part, dict) else part!r}"
                                 f" is not supported by Gemini deployments (supported: {', '.join(PARTS)})",
                                 param=_at(i, k))
        piece = convert(part, i, k)
        if piece is not None:
            out.append(piece)
    return out


def _calls(m: dict[str, Any], i: int, names: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for j, call in enumerate(m.get("tool_calls") or ()):
        fn = call.get("function") if isinstance(call, dict) else None
        try:
            args = orjson.loads(fn.get("arguments") or "{}") if isinstance(fn, dict) and fn.get("name") else None
        except orjson.JSONDecodeError:
            args = None
        if not isinstance(args, dict):
            raise InvalidRequest(f"messages[{i}].tool_calls[{j}] needs function.name and JSON-object arguments",
                                 param=f"messages[{i}].tool_calls[{j}]")
        if call.get("id"):
            names[call["id"]] = fn["name"]
        out.append({"functionCall": {"name": fn["name"], "args": args}})
    return out


def _response(m: dict[str, Any], i: int, names: dict[str, str]) -> list[dict[str, Any]]:
    name = names.get(m.get("tool_call_id"))
    if name is None:
        raise InvalidRequest(f"messages[{i}].tool_call_id does not match any earlier assistant tool call",
                             param=f"messages[{i}].tool_call_id")
    content = m.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    try:
        result = orjson.loads(content) if isinstance(content, str) else content
    except orjson.JSONDecodeError:
        result = content
    if not isinstance(result, dict):  # Gemini's `response` is a Struct: wrap scalars, lists and plain text
        result = {"result": result}
    return [{"functionResponse": {"name": name, "response": result}}]


ROLES: dict[str, tuple[str, Callable[[dict[str, Any], int, dict[str, str]], list[dict[str, Any]]]]] = {
    "system": ("system", lambda m, i, n: _parts(m.get("content"), i)),
    "developer": ("system", lambda m, i, n: _parts(m.get("content"), i)),
    "user": ("user", lambda m, i, n: _parts(m.get("content"), i)),
    "assistant": ("model", lambda m, i, n: _parts(m.get("content"), i) + _calls(m, i, n)),
    "tool": ("user", _response),
}


def contents(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents with same-role turns merged)."""
    if not isinstance(messages, list):
        raise InvalidRequest("messages must be an array", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for functionResponse
    for i, m in enumerate(messages):
        entry = ROLES.get(m.get("role")) if isinstance(m, dict) else None
        if entry is None:
            raise InvalidRequest(f"messages[{i}].role must be one of {', '.join(ROLES)}", param=f"messages[{i}].role")
        role, convert = entry
        parts = convert(m, i, names)
        if role == "system":
            system.extend(parts)
        elif turns and turns[-1]["role"] == role:
            turns[-1]["parts"].extend(parts)
        elif parts:
            turns.append({"role": role, "parts": parts})
    return system, turns or [dict(PLACEHOLDER)]


def schema(s: Any) -> Any:
    """A JSON Schema with the keywords Gemini rejects removed (property *names* are kept whatever they are)."""
    if isinstance(s, list):
        return [schema(x) for x in s]
    if not isinstance(s, dict):
        return s
    return {k: ({name: schema(v) for name, v in val.items()} if k == "properties" and isinstance(val, dict)
                else schema(val)) for k, val in s.items() if k not in SCHEMA_DROP}


def _tools(tools: Any) -> list[dict[str, Any]]:
    decls = []
    for j, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not fn.get("name"):
            raise InvalidRequest(f"tools[{j}]: only function tools with a name are supported", param=f"tools[{j}]")
        decl = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        if fn.get("parameters") and fn["parameters"].get("properties"):  # Gemini rejects empty OBJECT schemas
            decl["parameters"] = schema(fn["parameters"])
        decls.append(decl)
    return [{"functionDeclarations": decls}]


def _tool_config(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in CHOICE:
        return {"functionCallingConfig": {"mode": CHOICE[choice]}}
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and fn.get("name"):
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [fn["name"]]}}
    raise InvalidRequest("tool_choice must be auto, none, required or {type: function, function: {name}}",
                         param="tool_choice")


def _generation(body: dict[str, Any]) -> dict[str, Any]:
    config = {g: body[o] for o, g in GENERATION.items() if body.get(o) is not None}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        given = (fmt.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
        if given:
            config["responseSchema"] = schema(given)
    return config


def translate(body: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request body -> a Gemini GenerateContentRequest (raises InvalidRequest)."""
    for name in UNSUPPORTED.keys() & body.keys():
        if UNSUPPORTED[name](body[name]):
            raise InvalidRequest(f"'{name}' is not supported by Gemini models; remove it or choose another model",
                                 param=name, code="unsupported_parameter")
    system, turns = contents(body.get("messages"))
    out: dict[str, Any] = {"contents": turns}
    if system:
        out["systemInstruction"] = {"parts": system}
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        out["toolConfig"] = _tool_config(body["tool_choice"])
    generation = _generation(body)
    if generation:
        out["generationConfig"] = generation
    if "safety_settings" in settings:
        out["safetySettings"] = settings["safety_settings"]
    return out


def _inputs(body: dict[str, Any]) -> list[str]:
    given = body.get("input")
    inputs = [given] if isinstance(given, str) else given
    if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) for x in inputs):
        raise InvalidRequest("input must be a string or a non-empty array of strings for Gemini embeddings "
                             "(token arrays are not supported)", param="input")
    return inputs


class GeminiProvider:
    price_namespace: ClassVar[str] = "gemini"

    @classmethod
    def validate_settings(cls, d: Any, path: str) -> dict[str, Any]:
        check_settings(d.settings, SETTINGS, path, "gemini")
        return {**d.settings, "default_api_base": DEFAULT_BASE}

    def __init__(self, deployment: Deployment):
        d = self.deployment = deployment
        self.pool = Pool(d.api_base or DEFAULT_BASE, name=d.id)
        model = quote(d.model.removeprefix("models/"), safe="-._~")
        version = "" if self.pool.base_path.endswith(API_VERSIONS) else "/" + d.settings.get("api_version", "v1beta")
        self.model_ref = f"models/{d.model.removeprefix('models/')}"
        self.paths = {op: f"{version}/models/{model}:{op}" for op in ("generateContent", "batchEmbedContents")}
        self.paths["stream"] = f"{version}/models/{model}:streamGenerateContent?alt=sse"
        lines = {"Content-Type": "application/json", "User-Agent": "hedgeway", "x-goog-api-key": d.api_key,
                 **d.headers}
        self.headers = header_block(lines)
        self.first_byte_timeout = d.first_byte_timeout or d.timeout

    def _redact(self, text: str) -> str:
        return redact(text, self.deployment.api_key)

    async def _post(self, op: str, body: dict[str, Any]) -> Response:
        d = self.deployment
        resp = await self.pool.request("POST", self.paths[op], self.headers, orjson.dumps(body),
                                       self.first_byte_timeout, d.timeout)
        if resp.status == 200:
            return resp
        raw = await resp.read()
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = raw[:200].decode("utf-8", "replace")
        raise gemini_failure(resp.status, payload, d.id, self._redact)

    async def _json(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        raw = await (await self._post(op, body)).read()
        try:
            out = orjson.loads(raw)
        except orjson.JSONDecodeError:
            out = None
        if not isinstance(out, dict):
            raise UpstreamError(f"upstream returned an invalid {op} response", deployment=self.deployment.id)
        return out

    async def chat(self, request: ChatRequest) -> UpstreamReply:
        resp = await self._json("generateContent", translate(request.body, self.deployment.settings))
        try:
            body, usage = completion(resp, self.deployment.model)
        except (AttributeError, TypeError, KeyError):
            raise UpstreamError("upstream returned an invalid generateContent response",
                                deployment=self.deployment.id) from None
        return UpstreamReply(body=body, usage=usage)

    async def stream(self, request: ChatRequest) -> StreamReply:
        resp = await self._post("stream", translate(request.body, self.deployment.settings))
        chunks = self._relay(resp, StreamTranslator(self.deployment.id, self.deployment.model, self._redact,
                                                      request.include_usage))
        try:
            first = await chunks.__anext__()  # _relay raises rather than ending empty
        except BaseException:
            resp.close()
            raise
        return StreamReply(first, chunks, resp.close)

    async def _relay(self, resp: Response, tr: StreamTranslator):
        """OpenAI SSE bytes, one piece per upstream read that produced any. An upstream error event is
        raised after what preceded it has been passed on; a cut connection raises from `resp` itself."""
        async for data in resp:
            try:
                out = tr.feed(data)
            except (AttributeError, TypeError):
                out, tr.error = b"", UpstreamError("upstream sent a malformed stream event",
                                                   deployment=self.deployment.id)
            if out:
                yield out
            if tr.error is not None:
                resp.close()
                raise tr.error
        yield tr.finish()

    async def embeddings(self, body: dict[str, Any]) -> UpstreamReply:
        inputs = _inputs(body)
        request: dict[str, Any] = {"model": self.model_ref}
        if body.get("dimensions"):
            request["outputDimensionality"] = body["dimensions"]
        reqs = [{**request, "content": {"parts": [{"text": text}]}} for text in inputs]
        resp = await self._json("batchEmbedContents", {"requests": reqs})
        vectors = resp.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(inputs):
            raise UpstreamError("upstream returned an invalid batchEmbedContents response",
                                deployment=self.deployment.id)
        # batchEmbedContents reports no token usage: estimate ~4 characters per token so that rate limits
        # and (usually zero) embedding prices still see a plausible figure. It is an estimate, not a count.
        tokens = sum(max(1, len(text) // 4) for text in inputs)
        fmt = body.get("encoding_format")
        data = [{"object": "embedding", "index": i, "embedding": embedding((v or {}).get("values") or [], fmt)}
                for i, v in enumerate(vectors)]
        out = {"object": "list", "data": data, "model": self.deployment.model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return UpstreamReply(body=orjson.dumps(out), usage=Usage(prompt_tokens=tokens))

    def close(self) -> None:
        self.pool.close()
