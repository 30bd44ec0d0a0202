"""docker-compose.yml (and the GPU override) parse and hang together."""

from __future__ import annotations

import argparse
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.files import (
    COMPOSE,
    COMPOSE_GPU,
    GRAFANA,
    PROMETHEUS,
    ROOT,
    compose_services,
    environment,
    load_yaml,
)
from urnn_forecast.cli import build_parser
from urnn_forecast.settings import Settings

URNN_SERVICES = ("migrate", "service", "worker")  # containers that run `urnn`
HTTP_SERVICES = ("postgres", "mlflow", "service", "prometheus", "grafana")  # health checked


def _named_volume(spec: str) -> str | None:
    source = spec.split(":", 1)[0]
    return None if source.startswith((".", "/", "$")) else source


def _bind_source(spec: str) -> Path | None:
    source = spec.split(":", 1)[0]
    source = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", source)  # ${VAR:-default} -> default
    return ROOT / source if source.startswith(".") else None


def test_compose_parses_and_has_the_promised_services() -> None:
    services = compose_services()
    assert set(services) >= {
        "postgres",
        "mlflow",
        "migrate",
        "service",
        "worker",
        "prometheus",
        "grafana",
    }
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: neither image nor build"


def test_depends_on_targets_exist_with_valid_conditions() -> None:
    services = compose_services()
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        depends = service.get("depends_on", {})
        targets = depends if isinstance(depends, list) else list(depends)
        for target in targets:
            assert target in services, f"{name} depends on unknown service {target!r}"
        if isinstance(depends, dict):
            for target, spec in depends.items():
                condition = spec.get("condition", "service_started")
                assert condition in conditions, f"{name} -> {target}: {condition}"
                if condition == "service_healthy":
                    check = services[target].get("healthcheck", {})
                    assert check.get("test") and not check.get("disable"), (
                        f"{name} waits for {target} to be healthy, but it has no health check"
                    )


def test_start_order() -> None:
    services = compose_services()
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("service", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["mlflow"]["condition"] == "service_healthy"
    assert services["migrate"].get("restart") == "no"


def test_health_checks_where_promised() -> None:
    services = compose_services()
    for name in HTTP_SERVICES:
        check = services[name].get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert any("/healthz" in part for part in services["service"]["healthcheck"]["test"])
    assert any("/health" in part for part in services["mlflow"]["healthcheck"]["test"])
    # The image's HEALTHCHECK probes /healthz: containers without HTTP must switch it off.
    for name in ("migrate", "worker"):
        assert services[name]["healthcheck"] == {"disable": True}, name


def test_the_worker_runs_under_an_init_that_reaps_orphans() -> None:
    """Orphaned training processes (torchrun's ranks with nproc > 1) are reparented to PID 1;
    the worker as PID 1 never waited on them and they stayed zombies."""
    assert compose_services()["worker"].get("init") is True


def test_host_ports_are_unique() -> None:
    seen: dict[str, str] = {}
    for name, service in compose_services().items():
        for spec in service.get("ports", []):
            host = str(spec).rsplit(":", 1)[0]
            host = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", host)
            assert host not in seen, f"host port {host} used by {seen.get(host)} and {name}"
            seen[host] = name
    assert set(seen.values()) >= {"service", "mlflow", "prometheus", "grafana"}


def test_operator_ports_are_published_on_loopback_unless_asked() -> None:
    """MLflow's server has no authentication: anyone who reached host port 5000 (published on
    every interface) could register a version and move @champion, which the service polls and
    serves; Grafana kept admin/admin there too. Only the forecast service's port is for the
    network; the others bind OPS_BIND_ADDRESS, 127.0.0.1 unless the operator says otherwise."""
    services = compose_services()
    for name in ("mlflow", "prometheus", "grafana"):
        for spec in services[name]["ports"]:
            assert str(spec).startswith("${OPS_BIND_ADDRESS:-127.0.0.1}:"), (name, spec)
    assert services["service"]["ports"] == ["${URNN_SERVICE_PORT:-8000}:8000"]


def test_volumes_declared_and_bind_sources_exist() -> None:
    compose = load_yaml(COMPOSE)
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for spec in service.get("volumes", []):
            volume = _named_volume(str(spec))
            if volume is not None:
                assert volume in declared, f"{name}: volume {volume!r} is not declared"
                used.add(volume)
            source = _bind_source(str(spec))
            if source is not None:
                assert source.exists(), f"{name}: bind source {source} does not exist"
    assert used == declared, f"declared but unused volumes: {sorted(declared - used)}"


def test_env_names_are_real_settings_fields() -> None:
    fields = {f"URNN_{name.upper()}" for name in Settings.model_fields}
    overrides = load_yaml(COMPOSE_GPU)["services"]
    for name, service in [*compose_services().items(), *overrides.items()]:
        for key in environment(service):
            if key.startswith("URNN_"):
                assert key in fields, f"{name}: {key} is not a Settings field"


def test_urnn_containers_share_the_stack_settings() -> None:
    services = compose_services()
    for name in URNN_SERVICES:
        env = environment(services[name])
        assert env["URNN_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert "@postgres:5432/urnn" in env["URNN_DATABASE_URL"], name
        assert env["URNN_MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name
        # artifacts through the server: the worker's models must be loadable by the service
        assert env["URNN_MLFLOW_ARTIFACT_ROOT"] == "mlflow-artifacts:/", name
    service = environment(services["service"])
    assert "URNN_API_KEY" in service
    workers = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", service["URNN_SERVE_WORKERS"])
    if int(workers) > 1:
        assert service.get("PROMETHEUS_MULTIPROC_DIR"), "several workers need a metrics folder"
        assert service["PROMETHEUS_MULTIPROC_DIR"] in services["service"].get("tmpfs", [])


def test_mlflow_server_uses_postgres_and_serves_artifacts() -> None:
    mlflow = compose_services()["mlflow"]
    command = [str(part) for part in mlflow["command"]]
    assert mlflow["entrypoint"] == ["mlflow"] and command[0] == "server"
    store = command[command.index("--backend-store-uri") + 1]
    assert store.startswith("postgresql") and store.endswith("@postgres:5432/mlflow")
    assert "--serve-artifacts" in command
    destination = command[command.index("--artifacts-destination") + 1]
    mounts = [str(spec).split(":")[1] for spec in mlflow["volumes"]]
    assert any(destination.startswith(mount) for mount in mounts), "artifacts not on a volume"
    assert command[command.index("--port") + 1] == "5000"
    initdb = (ROOT / "deploy" / "postgres" / "initdb.sql").read_text(encoding="utf-8")
    assert "CREATE DATABASE mlflow" in initdb


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(p) for p in command]


def _parse(argv: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse reports bad arguments by exiting
        raise AssertionError(f"`urnn {' '.join(argv)}` does not parse ({exit_})") from None


@pytest.mark.parametrize("name", URNN_SERVICES)
def test_commands_are_real_urnn_subcommands(name: str) -> None:
    argv = _command(compose_services()[name])
    assert argv[0] == {"migrate": "db", "service": "serve", "worker": "worker"}[name]
    args = _parse(argv)
    assert args.command == argv[0]
    if name == "migrate":
        assert argv == ["db", "upgrade"]


def test_service_command_binds_all_interfaces_on_the_scraped_port() -> None:
    services = compose_services()
    args = _parse(_command(services["service"]))
    assert (args.host, args.port) == ("0.0.0.0", 8000)
    assert any(str(spec).endswith(":8000") for spec in services["service"]["ports"])
    scrape = load_yaml(PROMETHEUS)["scrape_configs"]
    job = next(job for job in scrape if job["job_name"] == "urnn-service")
    assert job["dns_sd_configs"][0]["names"] == ["service"]
    assert job["dns_sd_configs"][0]["port"] == 8000


def test_prometheus_and_grafana_mount_the_deploy_files() -> None:
    services = compose_services()
    prometheus = [str(spec) for spec in services["prometheus"]["volumes"]]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    grafana = {
        str(spec).split(":")[0]: str(spec).split(":")[1] for spec in services["grafana"]["volumes"]
    }
    assert grafana["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "urnn.yml")["providers"][0]
    assert grafana["./deploy/grafana/dashboards"] == provider["options"]["path"]


def test_gpu_override_targets_existing_services() -> None:
    overrides = load_yaml(COMPOSE_GPU)["services"]
    services = compose_services()
    for name, override in overrides.items():
        assert name in services
        devices = override["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
        assert environment(override)["URNN_DEVICE"] == "cuda"


def test_the_service_sees_the_histories_jobs_name() -> None:
    """POST /jobs reads the file's header where it is submitted (the service), and the worker
    trains on it: both must mount the same /data, or every /data/... job answers 422."""
    services = compose_services()

    def data_mounts(name: str) -> set[str]:
        return {v for v in services[name].get("volumes", []) if ":/data" in v}

    assert data_mounts("worker") and data_mounts("service") == data_mounts("worker")


def test_every_compose_variable_is_documented() -> None:
    """docs/configuration.md lists the variables docker-compose.yml reads (two were missing:
    an audit's)."""
    compose = (ROOT / "docker-compose.yml").read_text()
    documented = (ROOT / "docs" / "configuration.md").read_text()
    variables = set(re.findall(r"\$\{([A-Z_]+)[:}]", compose))
    assert variables, "no ${VAR} found: the pattern no longer matches the file"
    missing = sorted(v for v in variables if f"`{v}`" not in documented)
    assert missing == [], f"compose variables not in docs/configuration.md: {missing}"


def _image_env() -> dict[str, str]:
    """The runtime stage's ENV (KEY=VALUE pairs)."""
    from tests.deploy.files import dockerfile_stages

    pairs = [
        item.split("=", 1)
        for instruction in dockerfile_stages()[-1].of("ENV")
        for item in shlex.split(instruction.args)
    ]
    return {key: value for key, value in pairs}


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
@pytest.mark.parametrize("name", URNN_SERVICES)
def test_urnn_containers_settings_validate(
    name: str, gpu: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `urnn` container's settings as it starts them (the image's ENV, then compose's, the
    GPU override's, every ${VAR:-default} at its default) pass get_settings(): the names test
    above checks the names only, and a value out of range stops every command at start."""
    from urnn_forecast.settings import get_settings

    env = {k: v for k, v in _image_env().items() if k.startswith("URNN_")}
    env.update(environment(compose_services()[name]))
    if gpu:
        env.update(environment(load_yaml(COMPOSE_GPU)["services"].get(name, {})))
    for key in [k for k in os.environ if k.startswith("URNN_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value))
    settings = get_settings.__wrapped__()  # not the cached one of an earlier test
    assert str(settings.var_dir) == "/var/lib/urnn"
    assert settings.device == ("cuda" if gpu and name != "migrate" else "auto")


def test_urnn_image_containers_write_only_where_the_user_may() -> None:
    """The image runs as a non-root user, which owns only the state folder (URNN_VAR_DIR, the
    image's VOLUME): a writable mount elsewhere is a root-owned empty volume it cannot write,
    and MLflow's artifact destination must lie in its mounted volume (or it is lost with the
    container)."""
    var_dir = _image_env()["URNN_VAR_DIR"]
    services = compose_services()
    for name, service in services.items():
        if not str(service.get("image", "")).startswith("urnn-forecast"):
            continue
        for spec in service.get("volumes", []):
            parts = spec.split(":")
            if parts[-1] == "ro":
                continue
            target = parts[1]
            assert target == var_dir or target.startswith(f"{var_dir}/"), (name, spec)
    command = services["mlflow"]["command"]
    destination = command[command.index("--artifacts-destination") + 1]
    mounted = [spec.split(":")[1] for spec in services["mlflow"]["volumes"]]
    assert any(destination.startswith(f"{target}/") for target in mounted), destination
