"""The Dockerfile and docker-compose.yml name commands the CLI really has (no Docker engine here)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from app.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def parses(argv: list[str]) -> bool:
    try:
        build_parser().parse_args(argv)
        return True
    except SystemExit:
        return False


def test_parser_refuses_unknown_commands():
    assert not parses(["fly", "--to", "moon"])


def test_compose_services_run_real_cli_commands():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "worker-gpu"} <= set(services)
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    for name in ("migrate", "api", "worker", "worker-gpu"):
        command = services[name]["command"]
        assert parses(command), f"{name}: `cube {' '.join(command)}` is not a command the CLI has"
        env = services[name]["environment"]
        assert {"CUBE_DATABASE_URL", "CUBE_BROKER_URL", "CUBE_DATA_DIR"} <= set(env)
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_services_share_no_disk_only_the_object_store():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"minio", "bucket"} <= set(services)
    for name in ("migrate", "api", "worker", "worker-gpu"):
        assert "volumes" not in services[name], f"{name} mounts a volume; the store is the only shared place"
        env = services[name]["environment"]
        assert env["CUBE_STORAGE_URL"].startswith("s3://") and env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    for name in ("api", "worker", "worker-gpu"):
        assert services[name]["depends_on"]["bucket"]["condition"] == "service_completed_successfully"


def test_compose_settings_are_settings_the_service_reads():
    from app.settings import Settings

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = {f"CUBE_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        for key in service.get("environment", {}) or {}:
            if key.startswith("CUBE_"):
                assert key in known, f"{name}: {key} is not a setting"


def test_dockerfile_entrypoint_and_default_command():
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["cube"]' in text
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M).group(1)
    assert parses(yaml.safe_load(cmd))
    assert "pip install -c constraints.txt ." in text  # the same pins as the Makefile's install
    for path in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (ROOT / path).exists(), f"Dockerfile copies {path}, which does not exist"


@pytest.mark.parametrize("argv", [["up", "--port", "9000", "--data-dir", "x"], ["api"], ["worker", "--pool", "solo"],
                                  ["db", "upgrade"], ["db", "current"]])
def test_service_commands_parse(argv):
    assert parses(argv)
