"""The container deployment, validated without a Docker engine (there is none on these machines):
Dockerfile rules (parsed with dockerfile-parse), the compose file against the compose-spec JSON schema
vendored by check-jsonschema, and the topology's wiring (LB -> every replica, shared Redis/PostgreSQL,
config mounted and loadable with the env the compose file provides)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from hedgeway.config import load

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def dockerfile():
    parser = DockerfileParser(fileobj=open(ROOT / "Dockerfile", "rb"))
    return parser


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _stages(df) -> list[list[dict]]:
    stages: list[list[dict]] = []
    for ins in df.structure:
        if ins["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python_311(dockerfile):
    stages = _stages(dockerfile)
    assert len(stages) >= 2
    arg = re.search(r"ARG PYTHON_IMAGE=(\S+)", dockerfile.content).group(1)
    # pinned: a full x.y.z version and a variant, never `latest` or a bare major tag
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", arg), arg
    for stage in stages:
        assert stage[0]["value"].split()[0] == "${PYTHON_IMAGE}"


def test_runtime_stage_runs_as_non_root_with_healthcheck_and_serve(dockerfile):
    runtime = _stages(dockerfile)[-1]
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = [i["value"] for i in runtime if i["instruction"] == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0] and "--timeout=" in health[0]
    assert any(i["instruction"] == "EXPOSE" and "8080" in i["value"] for i in runtime)
    entry = " ".join(i["value"] for i in runtime if i["instruction"] in ("ENTRYPOINT", "CMD"))
    assert "hedgeway" in entry and "serve" in entry and "/etc/hedgeway/config.yaml" in entry
    # the runtime copies the built venv, not the build tools or the source tree
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert any(c.startswith("--from=build /opt/hedgeway") for c in copies)
    assert not any(c.split()[0] == "src" for c in copies)


def test_dockerfile_installs_the_postgres_and_semantic_extras_offline(dockerfile):
    content = dockerfile.content
    extras = re.search(r"ARG EXTRAS=(\S+)", content).group(1).split(",")
    assert {"postgres", "semantic"} <= set(extras)
    assert "${WHEEL}[${EXTRAS}]" in content


def test_dockerfile_lint_rules(dockerfile):
    """The hadolint rules that matter here (hadolint itself is not installable from PyPI or Debian)."""
    for ins in dockerfile.structure:
        value = ins["value"]
        assert ins["instruction"] != "ADD", "DL3020: use COPY (ADD fetches URLs and unpacks archives)"
        assert ins["instruction"] != "MAINTAINER", "DL4000: MAINTAINER is deprecated"
        if ins["instruction"] == "RUN":
            assert not re.search(r"\b(curl|wget)\b", value), "nothing is downloaded outside pip"
            assert "sudo" not in value, "DL3004"
            assert not re.search(r"pip3? install (?!--no-cache-dir)", value), "DL3042: pip install --no-cache-dir"
            assert not re.search(r"\bcd\s", value), "DL3003: use WORKDIR"
            if "pip install" in value:
                for req in re.findall(r'pip install --no-cache-dir\s+"([^"$]+)"', value):
                    assert "==" in req, f"DL3013: pin versions ({req})"
        if ins["instruction"] in ("ENV", "ARG"):
            assert not re.search(r"(KEY|SECRET|PASSWORD|TOKEN)\w*=", value, re.I), "no secrets in the image"
        if ins["instruction"] in ("CMD", "ENTRYPOINT", "HEALTHCHECK"):
            exec_form = value.split("CMD", 1)[-1].strip() if ins["instruction"] == "HEALTHCHECK" else value
            assert exec_form.startswith("["), f"DL3025: JSON form for {ins['instruction']}"
    assert dockerfile.structure[-1]["instruction"] in ("CMD", "ENTRYPOINT")


def test_dockerignore_keeps_secrets_and_state_out_of_the_build_context():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".git", ".venv", "*.db", ".env*", "tests"):
        assert pattern in ignored


def test_compose_file_matches_the_compose_spec_schema():
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(DEPLOY / "docker-compose.yml")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_schema_check_rejects_a_broken_file(tmp_path):
    """The check above can fail: a misspelled service key is refused by the same schema."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  gw:\n    image: x\n    helthcheck: {test: [CMD, true]}\n")
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(broken)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def test_compose_topology_replicas_behind_nginx_sharing_redis_and_postgres(compose):
    services = compose["services"]
    gateways = sorted(n for n in services if n.startswith("gateway-"))
    assert len(gateways) >= 3
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    upstream = re.search(r"upstream hedgeway \{(.*?)\}", conf, re.S).group(1)
    assert sorted(re.findall(r"server (gateway-\d+):8080", upstream)) == gateways
    assert "proxy_buffering off" in conf  # SSE streams pass through token by token
    assert services["lb"]["ports"] == ["8080:8080"]
    assert any(v.startswith("./nginx/nginx.conf:") for v in services["lb"]["volumes"])
    envs = set()
    for name in gateways:
        svc = services[name]
        assert "ports" not in svc  # replicas are reached only through the balancer
        assert any(v.startswith("./config.yaml:/etc/hedgeway/config.yaml") for v in svc["volumes"])
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
        assert int(svc["stop_grace_period"].rstrip("s")) >= 15  # drain (10 s) + ledger flush
        env = svc["environment"]
        assert "@postgres:5432/" in env["HEDGEWAY_LEDGER_URL"] and env["REDIS_URL"].startswith("redis://redis:")
        envs.add(tuple(sorted(env.items())))
    assert len(envs) == 1  # every replica identical: stateless
    # no literal secret in the file: every secret is ${VAR:?...} from the operator's environment
    for key, value in services[gateways[0]]["environment"].items():
        if re.search(r"KEY|PASSWORD", key):
            assert value.startswith("${") and ":?" in value


def test_compose_config_is_a_valid_hedgeway_config_with_the_env_compose_provides(compose, monkeypatch):
    env = compose["services"]["gateway-1"]["environment"]
    for key, value in env.items():
        monkeypatch.setenv(key, re.sub(r"\$\{(\w+):\?[^}]*\}", "placeholder", value))
    config = load(str(DEPLOY / "config.yaml"))
    assert config.ledger.url.startswith("postgresql://hedgeway:placeholder@postgres:5432/")
    assert config.limits.backend == "redis"  # budgets and rate limits hold across the replicas
    assert config.server.workers == 1 and config.server.port == 8080
    text = "\n".join(line.split("#")[0] for line in (DEPLOY / "config.yaml").read_text().splitlines())
    referenced = set(re.findall(r"os\.environ/(\w+)", text))
    assert referenced <= set(env)
