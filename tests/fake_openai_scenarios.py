"""FakeOpenAI (conftest) plus scenarios chosen by new upstream model names; existing names behave as before.

    tool-agent   answers "Let me check." plus one tool call per tool offered (at most two); once the last
                 message is a tool result, answers "tool said: <result>". Streams use CRLF separators and
                 split the tool arguments into fragments, as real servers do.
    vllm-stop    stops on the request's first stop string and names it in the choice's `stop_reason`,
                 as vLLM does.

Both speak OpenAI's documented chat.completion / chat.completion.chunk format (usage last in streams).
"""

from __future__ import annotations

import orjson
from aiohttp import web

from conftest import FakeOpenAI

ARGS = ['{"city": "Paris", "units": "metric"}', '{"tz": "CET"}']  # the tool-agent's call arguments, in order


class ScenarioOpenAI(FakeOpenAI):
    async def chat(self, request: web.Request):
        body = await request.json()  # aiohttp caches the body: _common reads it again
        scenario = {"tool-agent": self._tool_agent, "vllm-stop": self._vllm_stop}.get(body.get("model"))
        if scenario is None:
            return await super().chat(request)
        body, _ = await self._common(request)
        text, calls, choice_extra = scenario(body)
        usage = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}
        finish = "tool_calls" if calls else "stop"
        base = {"id": "chatcmpl-scenario", "created": 1700000000, "model": body["model"]}
        if not body.get("stream"):
            msg = {"role": "assistant", "content": text}
            if calls:
                msg["tool_calls"] = [{"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                                     for cid, name, args in calls]
            return web.json_response({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": msg, "finish_reason": finish, **choice_extra}]})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(choices, **extra):
            payload = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
            await resp.write(b"data: " + orjson.dumps(payload) + b"\r\n\r\n")

        await send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for word in text.split(" "):
            await send([{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}])
        for i, (cid, name, args) in enumerate(calls):
            await send([{"index": 0, "delta": {"tool_calls": [{"index": i, "id": cid, "type": "function",
                                                               "function": {"name": name, "arguments": ""}}]}}])
            for j in range(0, len(args), 7):
                await send([{"index": 0, "delta": {"tool_calls": [{"index": i,
                                                                   "function": {"arguments": args[j:j + 7]}}]}}])
        await send([{"index": 0, "delta": {}, "finish_reason": finish, **choice_extra}])
        await send([], usage=usage)
        await resp.write(b"data: [DONE]\r\n\r\n")
        await resp.write_eof()
        return resp

    @staticmethod
    def _tool_agent(body):
        last = body["messages"][-1]
        if last["role"] == "tool":
            return f"tool said: {last['content']}", [], {}
        calls = [(f"call_{i + 1}", t["function"]["name"], ARGS[i]) for i, t in enumerate(body.get("tools", [])[:2])]
        return "Let me check.", calls, {}

    @staticmethod
    def _vllm_stop(body):
        return "counting one two", [], {"stop_reason": (body.get("stop") or [None])[0]}
