"""Invariants of the infrastructure code and the pipelines, over parsed HCL and YAML.

Each check returns the list of violations (empty: the invariant holds), so the tests
can run it on the real tree and on deliberately broken copies alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infrastructure"
STACKS = ("bootstrap", "app-infra")
ENVIRONMENTS = ("dev", "pre", "prod")
# Resource types Azure does not tag (sub-resources, assignments, settings).
UNTAGGABLE = {
    "azurerm_subnet",
    "azurerm_role_assignment",
    "azurerm_role_definition",
    "azurerm_storage_container",
    "azurerm_federated_identity_credential",
    "azurerm_subnet_network_security_group_association",
    "azurerm_postgresql_flexible_server_configuration",
    "azurerm_postgresql_flexible_server_database",
    "azurerm_postgresql_flexible_server_active_directory_administrator",
    "azurerm_monitor_diagnostic_setting",
    "random_password",
}
SECRET_NAME = re.compile(r"pass(word)?|secret|token|private_key|connection_string|sas", re.I)
SECRET_VALUE = re.compile(r"^[A-Za-z0-9+/=_\-]{32,}$")
PINNED_SHA = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")


def _clean(value: Any) -> Any:
    """python-hcl2 keeps quotes on strings and adds bookkeeping keys: drop both."""
    if isinstance(value, dict):
        return {
            _clean(k): _clean(v)
            for k, v in value.items()
            if k not in ("__is_block__", "__comments__")
        }
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        parsed: dict[str, Any] = _clean(hcl2.load(handle))
        return parsed


def tf_files(root: Path = INFRA) -> list[Path]:
    return sorted(root.rglob("*.tf"))


def resources(root: Path = INFRA) -> Iterator[tuple[Path, str, str, dict[str, Any]]]:
    for path in tf_files(root):
        for block in parse(path).get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    yield path, kind, name, body


def check_providers_pinned(root: Path = INFRA) -> list[str]:
    problems = []
    for stack in STACKS:
        terraform = parse(root / stack / "terraform.tf")["terraform"][0]
        if "required_version" not in terraform:
            problems.append(f"{stack}: no required_version")
        for providers in terraform.get("required_providers", []):
            for name, spec in providers.items():
                version = spec.get("version", "") if isinstance(spec, dict) else ""
                if not re.fullmatch(r"\d+\.\d+\.\d+", version):
                    problems.append(f"{stack}: provider {name} not pinned to an exact version")
    return problems


def check_variables_described(root: Path = INFRA) -> list[str]:
    problems = []
    for path in tf_files(root):
        parsed = parse(path)
        for block in parsed.get("variable", []):
            for name, body in block.items():
                if not body.get("description"):
                    problems.append(f"{path.relative_to(root)}: variable {name} has no description")
                if SECRET_NAME.search(name) and body.get("sensitive") is not True:
                    problems.append(f"{path.relative_to(root)}: variable {name} must be sensitive")
        for block in parsed.get("output", []):
            for name, body in block.items():
                if SECRET_NAME.search(name) and body.get("sensitive") is not True:
                    problems.append(f"{path.relative_to(root)}: output {name} must be sensitive")
    return problems


def check_resources_tagged(root: Path = INFRA) -> list[str]:
    return [
        f"{path.relative_to(root)}: {kind}.{name} has no tags"
        for path, kind, name, body in resources(root)
        if kind not in UNTAGGABLE and "tags" not in body
    ]


def tfvars(root: Path = INFRA) -> dict[str, dict[str, Any]]:
    return {
        env: parse(root / "app-infra" / "environments" / f"{env}.tfvars") for env in ENVIRONMENTS
    }


def check_no_secrets_in_tfvars(root: Path = INFRA) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.tfvars")) + sorted(root.rglob("*.tfbackend")):
        for key, value in parse(path).items():
            if SECRET_NAME.search(key) or (isinstance(value, str) and SECRET_VALUE.match(value)):
                problems.append(f"{path.relative_to(root)}: {key} looks like a secret")
    return problems


def check_environments(root: Path = INFRA) -> list[str]:
    problems = []
    for env, values in tfvars(root).items():
        if values.get("environment") != env:
            problems.append(f"{env}.tfvars: environment is {values.get('environment')!r}")
        if env != "prod" and values.get("public_ingress") is not False:
            problems.append(f"{env}: must not be reachable from the public internet")
        if values.get("backup_retention_days", 0) < 7:
            problems.append(f"{env}: backups kept less than 7 days")
    prod = tfvars(root)["prod"]
    for key, wanted in (("zone_redundant_ha", True), ("geo_redundant_backup", True)):
        if prod.get(key) is not wanted:
            problems.append(f"prod: {key} must be {wanted}")
    if prod.get("min_replicas", 0) < 2:
        problems.append("prod: min_replicas must be at least 2")
    return problems


def _one(root: Path, kind: str) -> dict[str, Any]:
    (body,) = [b for _, k, _, b in resources(root) if k == kind]
    return body


def check_data_services_private(root: Path = INFRA) -> list[str]:
    problems = []
    vault = _one(root, "azurerm_key_vault")
    for key, wanted in (
        ("public_network_access_enabled", False),
        ("purge_protection_enabled", True),
        ("enable_rbac_authorization", True),
    ):
        if vault.get(key) is not wanted:
            problems.append(f"key vault: {key} must be {wanted}")
    if vault.get("network_acls", [{}])[0].get("default_action") != "Deny":
        problems.append("key vault: network_acls default_action must be Deny")
    if not any(k == "azurerm_private_endpoint" for _, k, _, _ in resources(root)):
        problems.append("key vault: no private endpoint")
    server = _one(root, "azurerm_postgresql_flexible_server")
    if server.get("public_network_access_enabled") is not False:
        problems.append("postgres: public_network_access_enabled must be false")
    if server.get("authentication", [{}])[0].get("active_directory_auth_enabled") is not True:
        problems.append("postgres: Entra ID authentication must be enabled")
    params = parse(root / "modules" / "postgres" / "main.tf")["locals"][0]["server_parameters"]
    for key, wanted in (
        ("require_secure_transport", "ON"),
        ("shared_preload_libraries", "pgaudit"),
        ("log_connections", "on"),
    ):
        if params.get(key) != wanted:
            problems.append(f"postgres: {key} must be {wanted}")
    environment = _one(root, "azurerm_container_app_environment")
    if environment.get("internal_load_balancer_enabled") != "${!var.public_ingress}":
        problems.append("apps: the environment must be internal unless public_ingress")
    return problems


def workflows(root: Path = ROOT) -> dict[Path, dict[Any, Any]]:
    files = sorted((root / ".github" / "workflows").glob("*.yml"))
    files += sorted((root / ".github" / "actions").glob("*/action.yml"))
    return {path: yaml.safe_load(path.read_text(encoding="utf-8")) for path in files}


def _steps(document: dict[Any, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_name, job in (document.get("jobs") or {}).items():
        if "uses" in job:
            yield job_name, {"uses": job["uses"]}
        for step in job.get("steps", []):
            yield job_name, step
    for step in (document.get("runs") or {}).get("steps", []):
        yield "composite", step


def _only_echoes(script: str) -> bool:
    """A placeholder: every line prints text and nothing is computed or written."""
    lines = [line.strip() for line in script.strip().splitlines() if line.strip()]
    return bool(lines) and all(
        line.startswith(("echo ", "printf ")) and "$(" not in line and ">>" not in line
        for line in lines
    )


def check_workflows(root: Path = ROOT) -> list[str]:
    problems = []
    for path, document in workflows(root).items():
        name = path.relative_to(root)
        is_workflow = "jobs" in document
        if is_workflow and "permissions" not in document:
            problems.append(f"{name}: no top-level permissions")
        if (
            is_workflow
            and "concurrency" not in document
            and "workflow_call" not in str(document.get(True, document.get("on")))
        ):
            problems.append(f"{name}: no concurrency group")
        for job, step in _steps(document):
            uses = step.get("uses", "")
            if uses and not uses.startswith("./") and not PINNED_SHA.match(uses):
                problems.append(f"{name}: {job} uses {uses} without a commit SHA")
            if _only_echoes(str(step.get("run", ""))):
                problems.append(f"{name}: {job} has a step that only echoes")
    return problems
