"""The deployment files: docker-compose.yml (validated by ``docker compose config`` or Debian's
``docker-compose``, and checked for what it promises: two replicas on one PostgreSQL behind one
port), the proxy's nginx.conf, the Dockerfile, and langgraph.json; the settings the compose file
sets reach qdrant-client (server URL, shard number, replication factor) and the conversations'
checkpointer (the database URL)."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import yaml

from tests.waiting import GUARD_S

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.parametrize("profile", [None, "ollama", "cluster"])
def test_compose_file_is_valid_for_every_profile(profile, tmp_path):
    cmd = compose_command()
    if cmd is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)")
    args = [*cmd, "-f", str(COMPOSE), *(["--profile", profile] if profile else []), "config"]
    out = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=GUARD_S)
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    assert {"qdrant", "geoagent"} <= set(resolved["services"])
    if profile is None:
        assert {"postgres", "geoagent-2", "proxy"} <= set(resolved["services"])


def test_compose_services_volumes_health_and_profiles(compose):
    services = compose["services"]
    assert set(services) >= {
        "qdrant",
        "postgres",
        "geoagent",
        "geoagent-2",
        "proxy",
        "ollama",
        "qdrant-node1",
        "qdrant-node2",
        "qdrant-node3",
        "geoagent-cluster",
    }
    for name in ("qdrant", "postgres", "geoagent", "geoagent-2", "proxy", "ollama", "qdrant-node1", "geoagent-cluster"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert services["geoagent"]["build"] == "." and (ROOT / "Dockerfile").is_file()
    for replica in ("geoagent", "geoagent-2"):
        env = services[replica]["environment"]
        assert env["GEOAGENT_QDRANT_URL"] == "http://qdrant:6333" and env["GEOAGENT_DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in env["GEOAGENT_DATABASE_URL"]
        for dependency in ("qdrant", "postgres"):
            assert services[replica]["depends_on"][dependency]["condition"] == "service_healthy"
        mounts = {m.split(":")[1] for m in services[replica]["volumes"]}
        assert mounts == {"/data", "/models"} and "ports" not in services[replica]  # reached through the proxy
    data = [next(m.split(":")[0] for m in services[r]["volumes"] if m.endswith(":/data")) for r in ("geoagent", "geoagent-2")]
    assert data[0] != data[1]  # no shared disk: conversations and uploads live in PostgreSQL
    assert any(v.endswith("/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert any(v.endswith("/qdrant/storage") for v in services["qdrant"]["volumes"])
    assert services["ollama"]["profiles"] == ["ollama"] and "profiles" not in services["qdrant"]
    for name in ("qdrant-node1", "qdrant-node2", "qdrant-node3", "geoagent-cluster"):
        assert services[name]["profiles"] == ["cluster"]
    for n in (1, 2, 3):
        node = services[f"qdrant-node{n}"]
        assert node["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        assert node["image"].startswith("qdrant/qdrant:v") and node["volumes"] != services["qdrant"]["volumes"]
        command = node["command"]
        assert command[command.index("--uri") + 1] == f"http://qdrant-node{n}:6335"
        if n > 1:
            assert command[command.index("--bootstrap") + 1] == "http://qdrant-node1:6335"
    assert set(compose["volumes"]) >= {"qdrant-storage", "model-cache", "geoagent-data", "geoagent-data-2", "postgres-data"}


def test_the_proxy_balances_both_replicas_on_one_port(compose):
    proxy = compose["services"]["proxy"]
    assert proxy["ports"] == ["8000:8000"] and proxy["image"].startswith("nginx:")
    source, target = next(v for v in proxy["volumes"] if "nginx.conf" in v).split(":")[:2]
    assert target == "/etc/nginx/conf.d/default.conf"
    conf = (ROOT / source).read_text()
    assert "server geoagent:8000;" in conf and "server geoagent-2:8000;" in conf and "listen 8000;" in conf
    assert "proxy_buffering off;" in conf  # the server-sent events stream through
    for replica in ("geoagent", "geoagent-2"):
        assert proxy["depends_on"][replica]["condition"] == "service_healthy"


def test_the_replicas_database_url_picks_postgresql(compose, monkeypatch, tmp_path):
    from agent.conversation.checkpointers import is_postgres, redacted
    from agent.settings import Settings

    env = _defaults(compose["services"]["geoagent"]["environment"])
    monkeypatch.setenv("GEOAGENT_DATABASE_URL", env["GEOAGENT_DATABASE_URL"])
    url = Settings(data_dir=tmp_path).database_url
    assert url is not None and is_postgres(url) and "geoagent:***@postgres" in redacted(url)


def _defaults(env: dict[str, str]) -> dict[str, str]:
    """The compose file's ${VAR:-default} values, as the container would see them with nothing set."""
    out = {}
    for key, value in env.items():
        value = str(value)
        if value.startswith("${") and ":-" in value:
            value = value[value.index(":-") + 2 : -1]
        if value:
            out[key] = value
    return out


def test_cluster_settings_reach_qdrant_client(compose, monkeypatch, tmp_path):
    """The geoagent-cluster service's environment gives a ServerStore on node 1 that creates
    collections with 3 shards and 2 replicas (checked on the qdrant-client call)."""
    import qdrant_client

    from agent.settings import Settings
    from retrieval_service.retrieval.stores import ServerStore, make_store
    from retrieval_service.service.settings import ServiceSettings

    raw = compose["services"]["geoagent-cluster"]["environment"]
    known = set(Settings.model_fields) | set(ServiceSettings.model_fields)
    for key in raw:  # every variable the compose file sets is a setting geoagent reads
        assert key.startswith("GEOAGENT_") and key.removeprefix("GEOAGENT_").lower() in known, key
    env = _defaults(raw)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(data_dir=tmp_path)
    assert (settings.qdrant_url, settings.qdrant_shard_number, settings.qdrant_replication_factor) == (
        "http://qdrant-node1:6333",
        3,
        2,
    )
    local = qdrant_client.QdrantClient(location=":memory:")
    seen: list[dict] = []
    monkeypatch.setattr(qdrant_client, "QdrantClient", lambda **kw: seen.append(kw) or local)
    sent: list[dict] = []
    real = local.create_collection
    monkeypatch.setattr(local, "create_collection", lambda name, **kw: sent.append(kw) or real(name, **kw))
    store = make_store(settings)
    assert isinstance(store, ServerStore) and seen[0]["url"] == "http://qdrant-node1:6333"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # local mode has no payload indexes; a server does
        assert store.create_collection("gallery", 16)
    assert sent[0]["shard_number"] == 3 and sent[0]["replication_factor"] == 2


def test_dockerfile_serves_the_package(compose):
    text = (ROOT / "Dockerfile").read_text()
    for path in [line.split()[1] for line in text.splitlines() if line.startswith("COPY ")]:
        assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which is not in the repository"
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]' in text and "HEALTHCHECK" in text and "EXPOSE 8000" in text
    assert compose["services"]["proxy"]["ports"] == ["8000:8000"]


def test_langgraph_json_names_a_compiled_graph():
    import importlib

    config = json.loads((ROOT / "langgraph.json").read_text())
    assert config["dependencies"] == ["."]
    path, attr = config["graphs"]["geoagent"].split(":")
    module = importlib.import_module(path.removeprefix("./").removesuffix(".py").replace("/", "."))
    graph = getattr(module, attr)
    assert hasattr(graph, "invoke") and hasattr(graph, "stream")
    assert set(graph.get_input_jsonschema()["properties"]) == {"image"}
    assert set(graph.get_output_jsonschema()["properties"]) == {"prediction"}
