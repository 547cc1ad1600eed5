"""LiteLLM proxy config (`model_list`, `litellm_settings`, `router_settings`, `general_settings`) →
Hedgeway's own config shape, so a team can point Hedgeway at the file it already has.

`convert(raw)` returns (hedgeway dict, warnings, rename) where `rename` maps a Hedgeway field path back to
the LiteLLM path it came from, so validation errors name the line the user wrote. Keys LiteLLM knows but
Hedgeway does not support yet are reported as warnings (never silently dropped); keys neither knows are
errors.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Callable

from hedgeway.errors import ConfigError

# LiteLLM "provider/" prefix -> (Hedgeway provider, default api_base). Everything that speaks the OpenAI
# wire format maps onto the `openai` provider with its own base URL.
LITELLM_PROVIDERS: dict[str, tuple[str, str]] = {
    "openai": ("openai", "https://api.openai.com/v1"),
    "azure": ("azure", ""),
    "hosted_vllm": ("openai", ""),
    "vllm": ("openai", ""),
    "llamacpp": ("openai", "http://127.0.0.1:8080/v1"),
    "ollama": ("openai", "http://127.0.0.1:11434/v1"),
    "ollama_chat": ("openai", "http://127.0.0.1:11434/v1"),
    "lm_studio": ("openai", "http://127.0.0.1:1234/v1"),
    "groq": ("openai", "https://api.groq.com/openai/v1"),
    "together_ai": ("openai", "https://api.together.xyz/v1"),
    "deepseek": ("openai", "https://api.deepseek.com/v1"),
    "mistral": ("openai", "https://api.mistral.ai/v1"),
    "fireworks_ai": ("openai", "https://api.fireworks.ai/inference/v1"),
    "openrouter": ("openai", "https://openrouter.ai/api/v1"),
    "xai": ("openai", "https://api.x.ai/v1"),
    "perplexity": ("openai", "https://api.perplexity.ai"),
    "anthropic": ("anthropic", "https://api.anthropic.com"),
    "gemini": ("gemini", "https://generativelanguage.googleapis.com"),
    "simulated": ("simulated", ""),
}

# litellm_params key -> Hedgeway deployment key (None: handled specially)
PARAMS = {"model": None, "api_base": "api_base", "api_key": "api_key", "timeout": "timeout",
          "stream_timeout": "first_byte_timeout", "rpm": "rpm", "tpm": "tpm", "weight": "weight",
          "api_version": None, "input_cost_per_token": None, "output_cost_per_token": None,
          "extra_headers": "headers", "max_parallel_requests": "max_concurrency"}
PARAMS_UNSUPPORTED = {"max_retries", "organization", "drop_params", "num_retries",
                      "order", "region_name", "mock_response", "merge_reasoning_content_in_choices",
                      "use_in_pass_through", "custom_llm_provider", "base_model", "tags"}
MODEL_INFO_KNOWN = {"id", "mode", "base_model", "input_cost_per_token", "output_cost_per_token",
                    "cache_read_input_token_cost", "max_tokens", "max_input_tokens", "max_output_tokens",
                    "supports_function_calling", "supports_vision", "description", "access_groups", "tier"}
SECTIONS = {"model_list", "litellm_settings", "router_settings", "general_settings", "environment_variables",
            "guardrails", "credential_list", "mcp_servers"}
ROUTING_STRATEGIES = {"simple-shuffle": "weighted", "least-busy": "least-in-flight"}
PER_TOKEN_TO_PER_M = Decimal(1_000_000)


def _fallbacks(value: Any, path: str) -> dict[str, list[str]]:
    """LiteLLM writes fallbacks as a list of one-key mappings: [{gpt-4o: [gpt-4o-mini]}]."""
    if not isinstance(value, list) or not all(isinstance(x, dict) and all(isinstance(v, list) for v in x.values())
                                              for x in value):
        raise ConfigError(path, "expected a list of {model: [fallback, ...]} mappings")
    return {k: list(v) for item in value for k, v in item.items()}


def _deployment(entry: dict, path: str, warnings: list[str]) -> tuple[str, dict]:
    if not isinstance(entry, dict) or "model_name" not in entry or "litellm_params" not in entry:
        raise ConfigError(path, "each model_list entry needs model_name and litellm_params")
    params = entry["litellm_params"]
    if not isinstance(params, dict) or not isinstance(params.get("model"), str):
        raise ConfigError(f"{path}.litellm_params.model", "required: 'provider/model-name'")
    prefix, _, name = params["model"].partition("/")
    if not name:
        prefix, name = "openai", prefix
    if prefix not in LITELLM_PROVIDERS:
        raise ConfigError(f"{path}.litellm_params.model",
                          f"provider {prefix!r} is not supported yet; supported: {', '.join(LITELLM_PROVIDERS)}")
    provider, default_base = LITELLM_PROVIDERS[prefix]
    dep: dict[str, Any] = {"provider": provider, "model": name, "settings": {}}
    if default_base:
        dep["api_base"] = default_base
    for key, value in params.items():
        if key in PARAMS and PARAMS[key]:
            dep[PARAMS[key]] = value
        elif key == "api_version":
            dep["settings"]["api_version"] = value
        elif key in PARAMS_UNSUPPORTED:
            warnings.append(f"{path}.litellm_params.{key}: not supported yet, ignored")
        elif key not in PARAMS:
            raise ConfigError(f"{path}.litellm_params.{key}", "unknown LiteLLM parameter")
    info = entry.get("model_info") or {}
    if not isinstance(info, dict):
        raise ConfigError(f"{path}.model_info", "must be a mapping")
    for key in info:
        if key not in MODEL_INFO_KNOWN:
            warnings.append(f"{path}.model_info.{key}: not used by Hedgeway, ignored")
    if "id" in info:
        dep["id"] = str(info["id"])
    cost_in = params.get("input_cost_per_token", info.get("input_cost_per_token"))
    cost_out = params.get("output_cost_per_token", info.get("output_cost_per_token"))
    if cost_in is not None or cost_out is not None:
        try:
            dep["price"] = {"input": Decimal(str(cost_in or 0)) * PER_TOKEN_TO_PER_M,
                            "output": Decimal(str(cost_out or 0)) * PER_TOKEN_TO_PER_M}
            if "cache_read_input_token_cost" in info:
                dep["price"]["cached_input"] = Decimal(str(info["cache_read_input_token_cost"])) * PER_TOKEN_TO_PER_M
        except ArithmeticError:  # decimal.InvalidOperation: not a number
            raise ConfigError(f"{path}.litellm_params", "token costs must be numbers") from None
    if not dep["settings"]:
        del dep["settings"]
    for key in set(entry) - {"model_name", "litellm_params", "model_info"}:
        raise ConfigError(f"{path}.{key}", "unknown model_list field")
    return str(entry["model_name"]), dep


def convert(raw: dict) -> tuple[dict, list[str], Callable[[str], str]]:
    warnings: list[str] = []
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(key, "unknown top-level key in a LiteLLM config")
        if key not in {"model_list", "litellm_settings", "router_settings", "general_settings"}:
            warnings.append(f"{key}: not supported yet, ignored")
    if not isinstance(raw["model_list"], list) or not raw["model_list"]:
        raise ConfigError("model_list", "must be a non-empty list")

    groups: dict[str, list[dict]] = {}
    origin: dict[str, str] = {}  # "models[k].deployments[j]" -> "model_list[i].litellm_params"
    for i, entry in enumerate(raw["model_list"]):
        name, dep = _deployment(entry, f"model_list[{i}]", warnings)
        groups.setdefault(name, []).append(dep)
        k = list(groups).index(name)
        origin[f"models[{k}].deployments[{len(groups[name]) - 1}]"] = f"model_list[{i}].litellm_params"

    routing: dict[str, Any] = {}
    lset = raw.get("litellm_settings") or {}
    rset = raw.get("router_settings") or {}
    gset = raw.get("general_settings") or {}
    for section, values in (("litellm_settings", lset), ("router_settings", rset), ("general_settings", gset)):
        if not isinstance(values, dict):
            raise ConfigError(section, "must be a mapping")
    for section, values in (("litellm_settings", lset), ("router_settings", rset)):
        for key, value in values.items():
            if key == "fallbacks":
                routing["fallbacks"] = _fallbacks(value, f"{section}.fallbacks")
            elif key == "num_retries":
                routing["num_retries"] = value
            elif key == "routing_strategy":
                if isinstance(value, str) and value in ROUTING_STRATEGIES:
                    routing["strategy"] = ROUTING_STRATEGIES[value]
                else:
                    warnings.append(f"{section}.routing_strategy: {value!r} not supported yet; "
                                    "using least-in-flight")
            else:
                warnings.append(f"{section}.{key}: not supported yet, ignored")
    out: dict[str, Any] = {"models": [{"name": n, "deployments": d} for n, d in groups.items()]}
    if routing:
        out["routing"] = routing
    for key, value in gset.items():
        if key == "master_key":
            out["auth"] = {"master_key": value}
        elif key == "database_url":
            out["ledger"] = {"url": value}
        else:
            warnings.append(f"general_settings.{key}: not supported yet, ignored")

    def rename(path: str) -> str:
        m = re.match(r"models\[\d+\]\.deployments\[\d+\]", path)
        if m and m.group(0) in origin:
            return origin[m.group(0)] + path[m.end():]
        if path.startswith("auth.master_key"):
            return "general_settings.master_key"
        if path.startswith("routing.fallbacks"):
            return "litellm_settings.fallbacks"
        return path

    return out, warnings, rename
