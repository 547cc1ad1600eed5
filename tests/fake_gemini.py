"""A fake Gemini API (generativelanguage v1beta) on loopback, written from Google's published reference:
`POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` (one `data:` event per
GenerateContentResponse, CRLF-separated, each with partial candidates and usageMetadata, the last one with
finishReason), `:batchEmbedContents`, and the error envelope `{"error": {code, message, status, details}}`.

It validates what the real API rejects (400 INVALID_ARGUMENT): a key anywhere but `x-goog-api-key`,
unknown top-level or generationConfig fields, roles other than user/model, empty parts, a functionResponse
whose response is not an object, schema keywords such as additionalProperties in function parameters.

It misbehaves on demand by the model in the URL:

    unavailable-503   503 UNAVAILABLE               quota-429      429 RESOURCE_EXHAUSTED (RetryInfo 0s)
    bad-400           400 INVALID_ARGUMENT          badkey-400     400 API_KEY_INVALID (as Google does)
    safety-blocked    a candidate with finishReason SAFETY and no content
    prompt-blocked    no candidates, promptFeedback.blockReason SAFETY
    cut-first         200 + headers, then the connection drops before any event
    cut-stream        one text event, then the connection drops
    error-mid-stream  one text event, then an in-stream error object
    anything else     an echo of the last user text, or functionCall parts when tools are declared and the
                      last user turn holds no functionResponse
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from fake_server import LoopbackServer

USAGE = {"promptTokenCount": 12, "candidatesTokenCount": 5, "thoughtsTokenCount": 3,
         "cachedContentTokenCount": 4, "totalTokenCount": 20}
ERRORS = {
    "unavailable-503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", []),
    "quota-429": (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.",
                  [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0s"}]),
    "bad-400": (400, "INVALID_ARGUMENT", "Request contains an invalid argument.", []),
    "badkey-400": (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                   [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                     "domain": "googleapis.com"}]),
}
TOP_LEVEL = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
             "cachedContent"}
GENERATION = {"temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "seed",
              "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema", "thinkingConfig"}
SCHEMA_REJECTED = ("additionalProperties", "$schema", "propertyNames")


def error(code: int, status: str, message: str, details=()) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "status": status,
                                        "details": list(details)}}, status=code)


def validation_error(body: dict, request: web.Request) -> str | None:
    if "key" in request.query or not request.headers.get("x-goog-api-key"):
        return "API key must be sent in x-goog-api-key"
    unknown = set(body) - TOP_LEVEL or set(body.get("generationConfig") or {}) - GENERATION
    if unknown:
        return f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}": Cannot find field.'
    if not body.get("contents"):
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, c in enumerate(body["contents"]):
        if c.get("role") not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{i}])"
        if not c.get("parts"):
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        for p in c["parts"]:
            fr = p.get("functionResponse")
            if fr is not None and not isinstance(fr.get("response"), dict):
                return "Invalid value at 'contents.parts.function_response.response' (type.googleapis.com/google.protobuf.Struct)"
    for tool in body.get("tools") or ():
        for decl in tool.get("functionDeclarations") or ():
            word = rejected_keyword(decl.get("parameters") or {})
            if word:
                return f'Invalid JSON payload received. Unknown name "{word}": Cannot find field.'
    return None


def rejected_keyword(schema) -> str | None:
    """The first schema keyword Gemini's OpenAPI Schema has no field for (property names are free)."""
    if isinstance(schema, list):
        return next((w for w in map(rejected_keyword, schema) if w), None)
    if not isinstance(schema, dict):
        return None
    for key, value in schema.items():
        if key in SCHEMA_REJECTED:
            return key
        inner = list(value.values()) if key == "properties" and isinstance(value, dict) else value
        if (found := rejected_keyword(inner)):
            return found
    return None


def last_user_text(body: dict) -> str:
    for c in reversed(body["contents"]):
        if c["role"] == "user":
            return " ".join(p["text"] for p in c["parts"] if "text" in p)
    return ""


def answer_parts(body: dict) -> list[dict]:
    """What the model 'says': function calls for declared tools (once), else an echo."""
    last = body["contents"][-1]["parts"]
    decls = [d for t in body.get("tools") or () for d in t.get("functionDeclarations") or ()]
    if decls and not any("functionResponse" in p for p in last):
        return [{"text": "Let me check."}] + [{"functionCall": {"name": d["name"], "args": {"city": "Paris", "n": i}}}
                                              for i, d in enumerate(decls)]
    responses = [p["functionResponse"] for p in last if "functionResponse" in p]
    if responses:
        return [{"text": "Result: " + orjson.dumps(responses[0]["response"]).decode()}]
    return [{"text": "echo: " + last_user_text(body)}]


class FakeGemini(LoopbackServer):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []  # path + query of every request

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{target}", self.dispatch)

    async def dispatch(self, request: web.Request):
        model, _, method = request.match_info["target"].rpartition(":")
        body = await self.received(request)
        self.urls.append(str(request.rel_url))
        self.calls[model] += 1
        if model in ERRORS:
            return error(*ERRORS[model])
        handler = {"generateContent": self.generate, "streamGenerateContent": self.stream,
                   "batchEmbedContents": self.embed}.get(method)
        if handler is None:
            return error(404, "NOT_FOUND", f"Method {method} not found")
        if method != "batchEmbedContents" and (problem := validation_error(body, request)):
            return error(400, "INVALID_ARGUMENT", problem)
        return await handler(request, model, body)

    def _response(self, model: str, parts: list[dict], finish="STOP", usage=USAGE) -> dict:
        if model == "prompt-blocked":
            return {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
                "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}, "modelVersion": model}
        cand = {"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}
        if model == "safety-blocked":
            cand = {"finishReason": "SAFETY", "index": 0, "safetyRatings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": True}]}
        return {"candidates": [cand], "usageMetadata": usage, "modelVersion": model, "responseId": "resp-fake01"}

    async def generate(self, request, model, body):
        n = (body.get("generationConfig") or {}).get("candidateCount", 1)
        resp = self._response(model, answer_parts(body))
        if n > 1:
            resp["candidates"] = [{**resp["candidates"][0], "index": i} for i in range(n)]
        return web.json_response(resp)

    async def stream(self, request, model, body):
        if request.query.get("alt") != "sse":
            return error(400, "INVALID_ARGUMENT", "this fake only streams with alt=sse")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(event):
            await resp.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
            await asyncio.sleep(0)

        if model == "cut-first":
            request.transport.abort()
            return resp
        parts = answer_parts(body)
        if model in ("prompt-blocked", "safety-blocked"):
            await send(self._response(model, []))
            await resp.write_eof()
            return resp
        words = parts[0]["text"].split(" ") if "text" in parts[0] else []
        calls = [p for p in parts if "functionCall" in p]
        growing = {"promptTokenCount": 12, "totalTokenCount": 12}
        for k, word in enumerate(words):
            chunk = self._response(model, [{"text": word + (" " if k < len(words) - 1 else "")}], None, growing)
            del chunk["candidates"][0]["finishReason"]
            await send(chunk)
            if model == "cut-stream":
                request.transport.abort()
                return resp
            if model == "error-mid-stream":
                await send({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
                await resp.write_eof()
                return resp
        for call in calls:  # each function call arrives complete in its own event
            chunk = self._response(model, [call], None, growing)
            del chunk["candidates"][0]["finishReason"]
            await send(chunk)
        await send(self._response(model, [{"text": ""}] if not calls else [], "STOP", USAGE))
        await resp.write_eof()
        return resp

    async def embed(self, request, model, body):
        if not request.headers.get("x-goog-api-key"):
            return error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers")
        out = []
        for i, req in enumerate(body["requests"]):
            if req.get("model") != f"models/{model}":
                return error(400, "INVALID_ARGUMENT", f"requests[{i}].model must be models/{model}")
            size = req.get("outputDimensionality", 4)
            out.append({"values": [round(0.1 * (i + 1) + 0.01 * j, 3) for j in range(size)]})
        return web.json_response({"embeddings": out})
