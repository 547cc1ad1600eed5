"""Config: both shapes, strict validation, errors that name the path, secrets from the environment."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hedgeway.config import from_dict, load
from hedgeway.errors import ConfigError


def minimal(**over):
    cfg = {"auth": {"master_key": "sk-m"},
           "models": [{"name": "m", "deployments": [{"provider": "openai", "model": "gpt-4o-mini",
                                                     "api_base": "http://127.0.0.1:9/v1"}]}]}
    cfg.update(over)
    return cfg


def error_of(raw) -> str:
    with pytest.raises(ConfigError) as err:
        from_dict(raw)
    return str(err.value)


def test_catalogue_price_applies_when_config_has_none():
    cfg = from_dict(minimal())
    dep = cfg.models["m"][0]
    assert dep.price.input == Decimal("0.15") and dep.price.output == Decimal("0.60")
    assert dep.price.source.startswith("catalogue")


@pytest.mark.parametrize("patch,path", [
    ({"models": [{"name": "m", "deployments": [{"provider": "openai", "model": "x", "timeout": 0}]}]},
     "models[0].deployments[0].timeout"),
    ({"models": [{"name": "m", "deployments": [{"provider": "openai", "model": "x", "api_bsae": "h"}]}]},
     "models[0].deployments[0].api_bsae"),
    ({"models": [{"name": "m", "deployments": [{"provider": "nope", "model": "x"}]}]},
     "models[0].deployments[0].provider"),
    ({"models": [{"name": "m", "deployments": [{"provider": "simulated", "model": "x",
                                                "settings": {"failure_rate": 2}}]}]},
     "models[0].deployments[0].settings.failure_rate"),
    ({"models": [{"name": "m", "deployments": [{"provider": "openai", "model": "x",
                                                "price": {"input": 1}}]}]},
     "models[0].deployments[0].price"),
    ({"routing": {"fallbacks": {"m": ["ghost"]}}}, "routing.fallbacks.m"),
    ({"surprise": 1}, "surprise"),
    ({"server": {"port": 70000}}, "server.port"),
])
def test_errors_name_the_bad_field(patch, path):
    assert error_of(minimal(**patch)).startswith(path + ":")


def test_secrets_come_from_environment(monkeypatch):
    monkeypatch.setenv("HW_TEST_KEY", "sk-from-env")
    cfg = from_dict(minimal(auth={"master_key": "os.environ/HW_TEST_KEY"}))
    assert cfg.auth.master_key == "sk-from-env"
    monkeypatch.delenv("HW_TEST_KEY")
    msg = error_of(minimal(auth={"master_key": "os.environ/HW_TEST_KEY"}))
    assert msg == "auth.master_key: environment variable HW_TEST_KEY is not set"
    # URLs that carry passwords too: the ledger's and the cache's Redis
    monkeypatch.setenv("HW_TEST_REDIS", "redis://:pw@127.0.0.1:6379/2")
    cfg = from_dict(minimal(cache={"redis_url": "os.environ/HW_TEST_REDIS"}))
    assert cfg.cache.redis_url == "redis://:pw@127.0.0.1:6379/2"
    assert error_of(minimal(cache={"redis_url": "os.environ/HW_NOT_SET"})).startswith("cache.redis_url:")


def test_auth_required_and_only_disabled_on_loopback():
    assert error_of(minimal(auth={})).startswith("auth.master_key")
    assert from_dict(minimal(auth={"disabled": True})).auth.disabled
    assert error_of(minimal(auth={"disabled": True}, server={"host": "0.0.0.0"})).startswith("auth.disabled")


def test_gpu_hour_price_is_amortised_per_token():
    cfg = from_dict(minimal(models=[{"name": "m", "deployments": [{
        "provider": "simulated", "model": "llama", "price": {"gpu_hour": "2.16", "gpus": 2, "tokens_per_second": 1500}}]}]))
    # 2 × $2.16/h over 1,500 tok/s × 3,600 s = $0.0000008 per token = $0.80 per million
    assert cfg.models["m"][0].price.input == Decimal("0.8")


LITELLM = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/HW_OPENAI_KEY
      rpm: 500
  - model_name: gpt-4o
    litellm_params:
      model: azure/my-gpt4o
      api_base: https://example.openai.azure.com
      api_version: "2024-10-21"
      api_key: os.environ/HW_OPENAI_KEY
  - model_name: llama
    litellm_params:
      model: hosted_vllm/meta-llama/Llama-3.1-8B-Instruct
      api_base: http://127.0.0.1:8000/v1
      input_cost_per_token: 0.0000001
      output_cost_per_token: 0.0000002
      max_retries: 3
    model_info:
      id: llama-a
litellm_settings:
  fallbacks: [{"llama": ["gpt-4o"]}]
  num_retries: 2
  drop_params: true
router_settings:
  routing_strategy: simple-shuffle
general_settings:
  master_key: sk-litellm-master
  alerting: ["slack"]
"""


def test_litellm_config_loads_as_is(tmp_path, monkeypatch):
    monkeypatch.setenv("HW_OPENAI_KEY", "sk-openai")
    path = tmp_path / "litellm.yaml"
    path.write_text(LITELLM)
    cfg = load(path)
    assert cfg.source == "litellm"
    assert [d.provider for d in cfg.models["gpt-4o"]] == ["openai", "azure"]
    assert cfg.models["gpt-4o"][0].api_base == "https://api.openai.com/v1" and cfg.models["gpt-4o"][0].rpm == 500
    assert cfg.models["gpt-4o"][1].settings["api_version"] == "2024-10-21"
    llama = cfg.models["llama"][0]
    assert llama.id == "llama-a" and llama.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert llama.price.input == Decimal("0.1") and llama.price.output == Decimal("0.2")
    assert cfg.routing.fallbacks == {"llama": ["gpt-4o"]} and cfg.routing.num_retries == 2
    assert cfg.routing.strategy == "weighted" and cfg.auth.master_key == "sk-litellm-master"
    joined = "\n".join(cfg.warnings)
    for unsupported in ("litellm_params.max_retries", "litellm_settings.drop_params", "general_settings.alerting"):
        assert unsupported in joined  # reported, not silently dropped


@pytest.mark.parametrize("entry,path", [
    ({"model_name": "x", "litellm_params": {"model": "bedrock/claude"}}, "model_list[0].litellm_params.model"),
    ({"model_name": "x", "litellm_params": {"model": "openai/x", "rpm": 0}}, "model_list[0].litellm_params.rpm"),
    ({"model_name": "x", "litellm_params": {"model": "openai/x", "api_bsae": "h"}}, "model_list[0].litellm_params.api_bsae"),
    ({"model_name": "x"}, "model_list[0]"),
])
def test_litellm_errors_name_the_litellm_path(entry, path):
    msg = error_of({"model_list": [entry], "general_settings": {"master_key": "k"}})
    assert msg.startswith(path + ":"), msg


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml")
