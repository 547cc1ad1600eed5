"""Render the Hedgeway Helm chart without the helm binary (none is installable here from PyPI or Debian).

Contract: implements exactly the Go-template subset the chart uses, with Helm's semantics, and fails loudly
(ValueError naming the action) on anything else, so the chart cannot silently drift outside what is tested:
    {{ .Values.a.b }} {{ .Release.Name }} {{ .Release.Namespace }} {{ .Chart.Name }} {{ .Chart.AppVersion }}
    "string" literals, integers, true/false; {{- / -}} whitespace trimming
    if / else / end, define / include (from templates/_helpers.tpl)
    functions: quote toYaml nindent indent default required not eq and or sha256sum toString
    pipelines `a | f x` (the piped value is the last argument, as in Go templates)
Real `helm template` / `helm lint` remain the reference where a helm binary exists (see deploy/README.md).

    python deploy/helm/helm_lite.py deploy/helm/hedgeway [-f extra-values.yaml] > rendered.yaml
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_ATOM = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')


def merge(base: dict, over: dict) -> dict:
    """Helm's values merge: maps merge recursively, anything else replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _to_yaml(v: Any) -> str:
    if v is None:
        return "null"
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n")


def _indent(n: int, s: str) -> str:
    return "\n".join(" " * int(n) + line for line in str(s).split("\n"))


def _quote(v: Any) -> str:
    s = "" if v is None else _str(v)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _str(v: Any) -> str:
    return {True: "true", False: "false"}.get(v, "") if isinstance(v, bool) else "" if v is None else str(v)


def _required(msg: str, v: Any) -> Any:
    if v in (None, ""):
        raise ValueError(f"required value missing: {msg}")
    return v


def _truthy(v: Any) -> bool:
    return bool(v) and v != "0" if isinstance(v, str) else bool(v)


FUNCS = {
    "quote": _quote, "toYaml": _to_yaml, "nindent": lambda n, s: "\n" + _indent(n, s), "indent": _indent,
    "default": lambda d, v=None: v if _truthy(v) else d, "required": _required, "not": lambda v: not _truthy(v),
    "eq": lambda a, b: a == b, "and": lambda a, b: b if _truthy(a) else a, "or": lambda a, b: a if _truthy(a) else b,
    "sha256sum": lambda s: hashlib.sha256(_str(s).encode()).hexdigest(), "toString": _str,
}


class Chart:
    def __init__(self, path: Path, values: dict | None = None, release: str = "hedgeway", namespace: str = "default"):
        self.path = Path(path)
        meta = yaml.safe_load((self.path / "Chart.yaml").read_text())
        base = yaml.safe_load((self.path / "values.yaml").read_text()) or {}
        self.ctx = {"Values": merge(base, values or {}), "Release": {"Name": release, "Namespace": namespace,
                                                                      "Service": "Helm"},
                    "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]}}
        self.defines: dict[str, list] = {}
        helpers = self.path / "templates" / "_helpers.tpl"
        if helpers.exists():
            self._exec(self._parse(helpers.read_text(), helpers.name), self.ctx)

    # -- parsing: text and actions, with trimming, into a tree of ("text", s) / ("out", expr) / blocks
    def _parse(self, src: str, name: str) -> list:
        tokens: list[tuple[str, str]] = []
        pos = 0
        for m in _ACTION.finditer(src):
            text = src[pos:m.start()]
            if m.group(1):
                text = text.rstrip()
            tokens.append(("text", text))
            tokens.append(("act", m.group(2)))
            pos = m.end()
            if m.group(3):
                rest = src[pos:]
                pos += len(rest) - len(rest.lstrip())
        tokens.append(("text", src[pos:]))
        root: list = []
        stack: list[tuple[list, Any]] = [(root, None)]
        for kind, val in tokens:
            body = stack[-1][0]
            if kind == "text":
                body.append(("text", val))
            elif val.startswith("/*"):
                continue
            elif val.startswith("if "):
                node = ["if", val[3:], [], []]
                body.append(node)
                stack.append((node[2], node))
            elif val.startswith("define "):
                node = ["define", val[7:].strip().strip('"'), []]
                body.append(node)
                stack.append((node[2], node))
            elif val == "else":
                node = stack.pop()[1]
                if node is None or node[0] != "if":
                    raise ValueError(f"{name}: else outside if")
                stack.append((node[3], node))
            elif val == "end":
                if len(stack) == 1:
                    raise ValueError(f"{name}: unmatched end")
                stack.pop()
            elif val.split(" ", 1)[0] in ("range", "with", "template", "block", "tpl") or val.startswith("$"):
                raise ValueError(f"{name}: '{{{{ {val} }}}}' is outside the subset helm_lite renders")
            else:
                body.append(("out", val))
        if len(stack) != 1:
            raise ValueError(f"{name}: unclosed block")
        return root

    def _atom(self, tok: str, ctx: dict) -> Any:
        if tok.startswith('"'):
            return bytes(tok[1:-1], "utf-8").decode("unicode_escape")
        if tok in ("true", "false"):
            return tok == "true"
        if tok == ".":
            return ctx
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        if tok.startswith("."):
            v: Any = ctx
            for part in tok[1:].split("."):
                v = v.get(part) if isinstance(v, dict) else None
            return v
        raise ValueError(f"unknown token {tok!r}")

    def _eval(self, expr: str, ctx: dict) -> Any:
        value, first = None, True
        for cmd in (c.strip() for c in expr.split(" | ")):
            toks = _ATOM.findall(cmd)
            head, args = toks[0], toks[1:]
            if head == "include":
                name, arg = self._atom(args[0], ctx), self._atom(args[1], ctx)
                value = self._exec(self.defines[name], arg).strip("\n")
            elif head in FUNCS:
                vals = [self._atom(a, ctx) for a in args] + ([] if first else [value])
                value = FUNCS[head](*vals)
            elif first and not args:
                value = self._atom(head, ctx)
            else:
                raise ValueError(f"unknown function {head!r} in {{{{ {expr} }}}}")
            first = False
        return value

    def _exec(self, nodes: list, ctx: dict) -> str:
        out = []
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "out":
                out.append(_str(self._eval(node[1], ctx)))
            elif node[0] == "if":
                out.append(self._exec(node[2] if _truthy(self._eval(node[1], ctx)) else node[3], ctx))
            elif node[0] == "define":
                self.defines[node[1]] = node[2]
        return "".join(out)

    def render(self) -> dict[str, str]:
        """templates/*.yaml -> rendered text (empty documents kept out)."""
        out = {}
        for path in sorted((self.path / "templates").glob("*.yaml")):
            text = self._exec(self._parse(path.read_text(), path.name), self.ctx)
            if text.strip():
                out[path.name] = text
        return out

    def manifests(self) -> list[dict]:
        docs = []
        for name, text in self.render().items():
            try:
                docs += [d for d in yaml.safe_load_all(text) if d]
            except yaml.YAMLError as exc:
                raise ValueError(f"{name} does not render to YAML: {exc}\n{text}") from None
        return docs


def main(argv: list[str]) -> int:
    chart, values = Path(argv[0]), {}
    if len(argv) == 3 and argv[1] == "-f":
        values = yaml.safe_load(Path(argv[2]).read_text()) or {}
    for name, text in Chart(chart, values).render().items():
        sys.stdout.write(f"---\n# Source: {chart.name}/templates/{name}\n{text.strip()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
