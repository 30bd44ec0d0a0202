"""Readers shared by the static checks of the container files (no Docker engine needed)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_GPU = ROOT / "deploy" / "compose.gpu.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: expected a mapping at the top"
    return data


def compose_services() -> dict[str, dict[str, Any]]:
    services = load_yaml(COMPOSE)["services"]
    assert isinstance(services, dict)
    return services


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, from either compose spelling (mapping or list)."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def dashboards() -> dict[Path, dict[str, Any]]:
    return {
        path: json.loads(path.read_text(encoding="utf-8")) for path in DASHBOARDS.glob("*.json")
    }


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def alert_exprs() -> list[str]:
    return [rule["expr"] for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


# --- PromQL: the metric names an expression selects ------------------------------------------

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan",
}  # fmt: skip
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression.

    Drops what is not a selector: strings, label matchers `{...}`, ranges `[...]`, grouping
    clauses `by (...)` etc., function names (an identifier followed by `(`), keywords, numbers
    and Grafana variables. Good enough for the dashboards and alerts we write; not a parser.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name = match.group(0)
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end() :].lstrip()[:1]
        if after == "(" or name.lower() in _KEYWORDS or before.isdigit() or before == ".":
            continue
        names.add(name)
    return names


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The Dockerfile's build stages, each with its instructions (continuations joined)."""
    stages: list[Stage] = []
    logical = ""
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if logical and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not logical:
            start = number
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), start)
        logical = ""
        if instruction.keyword == "FROM":
            parts = instruction.args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages
