"""Invariants of the infrastructure code and the pipelines, over parsed HCL and YAML.

Each check returns the list of violations (empty: the invariant holds), so the tests
can run it on the real tree and on deliberately broken copies alike.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import hcl2
import yaml

from rates_platform.dbaccess.bootstrap import ROTATOR_LOGIN
from rates_platform.dbaccess.keyvault import CREATED_TAG, STAGES_TAG
from rates_platform.dbaccess.rotation import RotationPolicy

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
    "azurerm_storage_container_immutability_policy",
    "azurerm_federated_identity_credential",
    "azurerm_subnet_network_security_group_association",
    "azurerm_postgresql_flexible_server_configuration",
    "azurerm_postgresql_flexible_server_database",
    "azurerm_postgresql_flexible_server_active_directory_administrator",
    "azurerm_monitor_diagnostic_setting",
    "azurerm_logic_app_trigger_http_request",  # parts of a (tagged) Logic App workflow
    "azurerm_logic_app_action_http",
    # Parts of a (tagged) Front Door profile.
    "azurerm_cdn_frontdoor_origin_group",
    "azurerm_cdn_frontdoor_origin",
    "azurerm_cdn_frontdoor_route",
    "azurerm_cdn_frontdoor_security_policy",
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
    return _parse_text(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=512)
def _parse_text(text: str) -> dict[str, Any]:
    """Parsing HCL is slow; the same text parses the same (callers must not mutate)."""
    parsed: dict[str, Any] = _clean(hcl2.loads(text))
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
            # Without a workflow-wide group, each job holding an environment has its own.
            for job_name, job in document["jobs"].items():
                if "environment" in job and "concurrency" not in job:
                    problems.append(f"{name}: no concurrency group for {job_name}")
            if not any("concurrency" in job or "uses" in job for job in document["jobs"].values()):
                problems.append(f"{name}: no concurrency group")
        for job, step in _steps(document):
            uses = step.get("uses", "")
            if uses and not uses.startswith("./") and not PINNED_SHA.match(uses):
                problems.append(f"{name}: {job} uses {uses} without a commit SHA")
            if _only_echoes(str(step.get("run", ""))):
                problems.append(f"{name}: {job} has a step that only echoes")
    return problems


# --- Delivery: identities, first run, least privilege (issue 11) ---------------------

GITHUB_EXPR = re.compile(r"^\$\{\{\s*(.+?)\s*\}\}$")
VARS_EXPR = re.compile(r"^\$\{\{\s*vars\.([A-Z0-9_]+)\s*\}\}$")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def github_identities(root: Path = INFRA) -> dict[str, dict[str, Any]]:
    """The bootstrap's table: identity key → its GitHub environments and variable."""
    identities: dict[str, dict[str, Any]] = parse(root / "bootstrap" / "locals.tf")["locals"][0][
        "github_identities"
    ]
    return identities


def _workflow_documents(root: Path) -> dict[str, dict[Any, Any]]:
    return {
        path.relative_to(root).as_posix(): document for path, document in workflows(root).items()
    }


def _expand(value: str, matrix: dict[str, Any], inputs: dict[str, list[str]]) -> list[str]:
    """Every value a job's `environment:` expression takes (matrix, reusable inputs)."""
    values = [value]
    for name, choices in list(matrix.items()) + [(f"inputs.{k}", v) for k, v in inputs.items()]:
        key = name if name.startswith("inputs.") else f"matrix.{name}"
        pattern = re.compile(r"\$\{\{\s*" + re.escape(key) + r"\s*\}\}")
        values = (
            [pattern.sub(str(choice), v) for v in values for choice in (choices or [""])]
            if any(pattern.search(v) for v in values)
            else values
        )
    return values


def _callers(documents: dict[str, dict[Any, Any]], path: str) -> dict[str, list[str]]:
    """Input values a reusable workflow is called with, across every workflow."""
    values: dict[str, list[str]] = {}
    for document in documents.values():
        for job in (document.get("jobs") or {}).values():
            if str(job.get("uses", "")).removeprefix("./") == path:
                for key, value in (job.get("with") or {}).items():
                    values.setdefault(key, []).append(str(value))
    return values


def _azure_logins(job: dict[str, Any], actions: dict[str, dict[Any, Any]]) -> list[str]:
    """The client-id expression of every Azure login of a job's steps."""
    found = []
    for step in job.get("steps", []):
        uses = str(step.get("uses", ""))
        with_ = step.get("with") or {}
        if uses.startswith("azure/login@"):
            found.append(str(with_.get("client-id", "")))
        elif uses.startswith("./"):
            action = actions.get(uses.removeprefix("./") + "/action.yml", {})
            steps = (action.get("runs") or {}).get("steps", [])
            if any(str(s.get("uses", "")).startswith("azure/login@") for s in steps):
                found.append(str(with_.get("client-id", "")))
        env = step.get("env") or {}
        if "ARM_CLIENT_ID" in env:
            found.append(str(env["ARM_CLIENT_ID"]))
    return found


def check_oidc_federation(root: Path = ROOT, infra: Path | None = None) -> list[str]:
    """Every job that logs in to Azure runs in a GitHub environment that a federated
    credential names (`repo:OWNER/REPO:environment:NAME`), on the identity whose client
    id variable the job passes."""
    identities = github_identities(infra or root / "infrastructure")
    documents = _workflow_documents(root)
    actions = {k: v for k, v in documents.items() if k.endswith("action.yml")}
    problems = []
    for path, document in documents.items():
        if "jobs" not in document:
            continue
        inputs = _callers(documents, path)
        for name, job in document["jobs"].items():
            logins = _azure_logins(job, actions)
            if not logins:
                continue
            environment = job.get("environment")
            if isinstance(environment, dict):
                environment = environment.get("name")
            if not environment:
                problems.append(f"{path}: {name} logs in to Azure outside any GitHub environment")
                continue
            matrix = (job.get("strategy") or {}).get("matrix") or {}
            for login in logins:
                variable = VARS_EXPR.match(login)
                if not variable:
                    problems.append(f"{path}: {name} passes client id {login!r}, not a vars.NAME")
                    continue
                for env_name in _expand(str(environment), matrix, inputs):
                    if "${{" in env_name:
                        problems.append(f"{path}: {name}: cannot resolve environment {env_name!r}")
                    elif not any(
                        i["client_id_variable"] == variable.group(1)
                        and env_name in i["github_environments"]
                        for i in identities.values()
                    ):
                        problems.append(
                            f"{path}: {name} uses {variable.group(1)} in environment {env_name!r}, "
                            "but no identity with that variable is federated to it"
                        )
    return problems


def _locals(path: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in parse(path).get("locals", []):
        merged.update(block)
    return merged


def _resource(root: Path, kind: str, name: str) -> dict[str, Any] | None:
    return next((b for _, k, n, b in resources(root) if k == kind and n == name), None)


def check_database_tls(root: Path = INFRA) -> list[str]:
    """verify-full against the image's CA bundle, with SSL_CERT_FILE for the wheel's OpenSSL."""
    problems = []
    apps = _locals(root / "modules" / "container_apps" / "main.tf")
    if apps.get("ca_bundle") != CA_BUNDLE:
        problems.append(f"apps: ca_bundle must be {CA_BUNDLE}")
    url = str(apps.get("database_url", ""))
    if "sslmode=verify-full" not in url or "sslrootcert=${local.ca_bundle}" not in url:
        problems.append("apps: DATABASE_URL needs sslmode=verify-full, sslrootcert=<CA bundle>")
    if apps.get("common_env", {}).get("SSL_CERT_FILE") != "${local.ca_bundle}":
        problems.append("apps: SSL_CERT_FILE must point at the CA bundle in every container")
    text = (root / "modules" / "container_apps" / "main.tf").read_text(encoding="utf-8")
    containers = re.findall(r"for_each = merge\(([^,)]+)", text)
    if len(containers) < 2:
        problems.append("apps: the API and the jobs must each merge local.common_env into env")
    for container in containers:
        if container.strip() != "local.common_env":
            problems.append(
                f"apps: a container's env is not based on local.common_env: {container}"
            )
    return problems


def _apps_text(root: Path) -> str:
    return "".join(
        path.read_text(encoding="utf-8")
        for path in sorted((root / "modules" / "container_apps").glob("*.tf"))
    )


def env_names_set(root: Path = INFRA) -> set[str]:
    """Environment variable names the container apps and jobs set (UPPER_CASE keys)."""
    return set(re.findall(r"\b([A-Z][A-Z0-9_]+)\s*=(?!=)", _apps_text(root)))


def env_names_shell_read(root: Path = INFRA) -> set[str]:
    """Names the jobs' own shell commands (written in the same module) read: $NAME."""
    return set(re.findall(r"\$([A-Z][A-Z0-9_]+)\b", _apps_text(root))) | set(
        re.findall(r"\(\(\$\(date \+%s\) - ([A-Z][A-Z0-9_]+)", _apps_text(root))
    )


def env_names_read(src: Path = ROOT / "src" / "rates_platform") -> set[str]:
    """Every UPPER_CASE string constant of the package: what the code can read."""
    names = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    return {name for name in names if re.fullmatch(r"[A-Z][A-Z0-9_]{2,}", name)}


# Read by libraries and tools, not by our code: libpq, OpenSSL, azure-identity, the
# Azure CLI.
EXTERNAL_ENV = re.compile(r"^(PG[A-Z]+|SSL_CERT_FILE|AZURE_CLIENT_ID|AZURE_CONFIG_DIR)$")


def check_env_names(root: Path = INFRA, src: Path = ROOT / "src" / "rates_platform") -> list[str]:
    read = env_names_read(src) | env_names_shell_read(root)
    return [
        f"apps: {name} is set but nothing reads it"
        for name in sorted(env_names_set(root))
        if name not in read and not EXTERNAL_ENV.match(name)
    ]


SERVING = {"api"}


def check_key_vault_least_privilege(root: Path = INFRA) -> list[str]:
    problems = []
    names = {RotationPolicy().secret_name, ROTATOR_LOGIN}
    for _, kind, name, body in resources(root / "modules" / "keyvault"):
        if kind == "azurerm_role_assignment" and "/secrets/" not in str(body.get("scope")):
            problems.append(f"key vault: {name} grants a role on the whole vault")
    (module,) = [
        m["key_vault"] for m in parse(root / "app-infra" / "main.tf")["module"] if "key_vault" in m
    ]
    for grant in module.get("vault_grants", []):
        if grant["secret"] not in names:
            problems.append(f"key vault: {grant['secret']} is no secret the code reads")
        if grant["principal"] in SERVING and (
            grant["secret"] != RotationPolicy().secret_name
            or grant["role"] != "Key Vault Secrets User"
        ):
            problems.append(
                f"key vault: {grant['principal']} serves traffic and may only read "
                f"{RotationPolicy().secret_name}, not {grant['role']} on {grant['secret']}"
            )
    return problems


def check_first_run_infra(root: Path = INFRA) -> list[str]:
    """What a first apply needs: no password in state, DNS before PostgreSQL, a stable
    apps environment, runners that reach it, alerts."""
    problems = []
    server = _one(root, "azurerm_postgresql_flexible_server")
    if "administrator_password" in server or "administrator_password_wo" not in server:
        problems.append("postgres: the administrator password must be write-only (not in state)")
    if any(kind == "random_password" for _, kind, _, _ in resources(root)):
        problems.append("postgres: a random_password resource keeps its result in state")
    outputs = {
        name: body
        for block in parse(root / "modules" / "network" / "outputs.tf").get("output", [])
        for name, body in block.items()
    }
    zone_output = outputs.get("postgres_dns_zone_id", {})
    if "azurerm_private_dns_zone_virtual_network_link.zones" not in str(
        zone_output.get("depends_on")
    ):
        problems.append("network: postgres_dns_zone_id must depend on the zone's VNet link")
    environment = _one(root, "azurerm_container_app_environment")
    ignored = str(environment.get("lifecycle", [{}])[0].get("ignore_changes", ""))
    if (
        "infrastructure_resource_group_name" not in environment
        and "infrastructure_resource_group_name" not in ignored
    ):
        problems.append(
            "apps: infrastructure_resource_group_name unset: replaced on every plan (#28727)"
        )
    if _resource(root, "azurerm_subnet", "runners") is None:
        problems.append("network: no subnet for the self-hosted runners")
    guarded = _resource(root, "azurerm_network_security_group", "guarded") or {}
    if "azurerm_subnet.runners" not in str(guarded.get("security_rule")):
        problems.append("network: PostgreSQL and Key Vault must accept the runner subnet")
    record = _resource(root, "azurerm_private_dns_a_record", "apps_wildcard") or {}
    if (
        record.get("name") != "*"
        or _resource(root, "azurerm_private_dns_zone_virtual_network_link", "apps") is None
    ):
        problems.append(
            "network: no linked private zone with a wildcard record for the apps domain"
        )
    alerts = _locals(root / "modules" / "alerts" / "main.tf")
    wanted = {
        "rotation-failed",
        "rotation-stuck",
        "rotation-overdue",
        "audit-verify-failed",
        "access-overdue",
        "api-not-ready",
        "api-5xx-rate",
        "api-5xx",
        "api-restarts",
    }
    have = set(alerts.get("log_rules", {})) | set(alerts.get("metric_rules", {}))
    if wanted - have:
        problems.append(f"alerts: missing {sorted(wanted - have)}")
    return problems


def check_state_access(root: Path = INFRA) -> list[str]:
    """Only infra identities write state, only plan identities read it."""
    allowed = {
        ("Storage Blob Data Contributor", "${local.by_role.infra}"),
        ("Storage Blob Data Reader", "${local.by_role.plan}"),
        ("Storage Blob Data Reader", "${var.state_reader_principal_ids}"),
    }
    operator = "${azurerm_storage_container.bootstrap.resource_manager_id}"
    return [
        f"bootstrap: {name}: {body.get('role_definition_name')} on state to {body.get('for_each')}"
        for _, kind, name, body in resources(root / "bootstrap")
        if kind == "azurerm_role_assignment"
        and "azurerm_storage_" in str(body.get("scope"))
        and (body.get("role_definition_name"), body.get("for_each")) not in allowed
        and not (body.get("scope") == operator and "client_config" in str(body["principal_id"]))
    ]


def _runs(job: dict[str, Any]) -> list[str]:
    return [str(step.get("run", "")) for step in job.get("steps", [])]


def _commands(job: dict[str, Any]) -> list[str]:
    """Each step's shell script, or the terraform command it hands to the action."""
    return [
        str((step.get("with") or {}).get("command", "")) + str(step.get("run", ""))
        for step in job.get("steps", [])
    ]


def _first(items: list[str], *needles: str) -> int | None:
    return next((i for i, item in enumerate(items) if all(n in item for n in needles)), None)


def _needs(jobs: dict[str, Any], name: str) -> set[str]:
    """Every job ``name`` waits for, transitively."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        needs = jobs.get(todo.pop(), {}).get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            if need not in seen:
                seen.add(need)
                todo.append(need)
    return seen


def check_pipeline_order(root: Path = ROOT) -> list[str]:
    """Plans on pull requests; per environment in order: apply, deploy; prod approved
    (its environment), then validated, then tagged; the image runs before its push."""
    problems = []
    documents = _workflow_documents(root)
    main = documents.get(".github/workflows/main.yml", {}).get("jobs", {})
    if "dev" not in _needs(main, "pre") or "pre" not in _needs(main, "prod"):
        problems.append("main.yml: deploys must run dev → pre → prod")
    deploy = documents.get(".github/workflows/deploy.yml", {}).get("jobs", {}).get("deploy", {})
    commands = _commands(deploy)
    applied, deployed = _first(commands, "apply "), _first(commands, "scripts/deploy.sh")
    if applied is None or deployed is None or applied > deployed:
        problems.append("deploy.yml: terraform apply must run before scripts/deploy.sh")
    infra = documents.get(".github/workflows/infra.yml", {})
    plan = " ".join(_commands(infra.get("jobs", {}).get("plan", {})))
    triggers = str(infra.get(True, infra.get("on")))
    if "pull_request" not in triggers or "plan " not in plan or "gh pr comment" not in plan:
        problems.append("infra.yml: each pull request needs a plan per environment, commented")
    release = next(
        (n for n, j in main.items() if _first(_runs(j), "gh release create") is not None), None
    )
    validations = [
        n
        for n in _needs(main, release or "")
        if "prod" in _needs(main, n) and _first(_runs(main[n]), "scripts/smoke.py") is not None
    ]
    if release is None or not validations:
        problems.append("main.yml: the release tag must wait for a validation of prod")
    build = _runs(main.get("build", {}))
    started = _first(build, "docker compose", "scripts/smoke.py")
    pushed = _first(build, "docker push")
    if started is None or pushed is None or started > pushed:
        problems.append("main.yml: the image must run (compose, smoke test) before its push")
    return problems


IMAGE_REF = re.compile(
    r"(?:image:[ \t]*|_IMAGE:[ \t]*|docker run [^\n]*?\s)"
    r"([a-z0-9.\-/]+(?::[\w.\-]+)?(?:@sha256:[0-9a-f]{64})?)\b"
)


def check_pipeline_gates(root: Path = ROOT) -> list[str]:
    """ZAP can fail; labels exist before use; every image is pinned by digest."""
    problems = []
    for path, document in _workflow_documents(root).items():
        for job_name, job in (document.get("jobs") or {}).items():
            for run in _runs(job):
                if "zap-baseline.py" in run and (re.search(r"\s-I\b", run) or " -c " not in run):
                    problems.append(f"{path}: {job_name}: ZAP with -I or without a rules file")
                for label in re.findall(r"gh issue create[^\n]*--label (\S+)", run):
                    if f"gh label create {label}" not in run:
                        problems.append(f"{path}: {job_name}: label {label} used, never created")
        for image in IMAGE_REF.findall((root / path).read_text(encoding="utf-8")):
            if ("/" in image or ":" in image) and "@sha256:" not in image:
                problems.append(f"{path}: image {image} is not pinned by digest")
    for name, pattern in (
        ("Dockerfile", r"^FROM\s+(\S+)"),
        ("compose.yaml", r"^\s+image:\s*(\S+)"),
    ):
        path = root / name
        for image in re.findall(
            pattern, path.read_text(encoding="utf-8") if path.exists() else "", re.M
        ):
            if "@sha256:" not in image:
                problems.append(f"{name}: image {image} is not pinned by digest")
    if not (root / ".github" / "zap" / "rules.tsv").exists():
        problems.append(".github/zap/rules.tsv: ZAP's accepted warnings are missing")
    return problems


def deploy_section(root: Path = ROOT) -> str:
    text = (root / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Deploy\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _outputs(path: Path) -> set[str]:
    return {name for block in parse(path).get("output", []) for name in block}


def _secret_set_problems(command: str) -> list[str]:
    """An `az keyvault secret set` command against what dbaccess.keyvault reads."""
    problems = []
    name = re.search(r"--name\s+(\S+)", command)
    if not name or name.group(1) not in {RotationPolicy().secret_name, ROTATOR_LOGIN}:
        problems.append(f"README: {command!r} sets no secret the code reads")
    value = re.search(r"--value\s+'([^']*)'", command)
    try:
        keys = set(json.loads(value.group(1))) if value else set()
    except json.JSONDecodeError:
        keys = set()
    if not {"username", "password"} <= keys:
        problems.append(f"README: {command!r}: the value must be JSON with username and password")
    tags = dict(re.findall(r"(\w+)=(\S+)", command.split("--tags", 1)[-1]))
    stages = set(tags.get(STAGES_TAG, "").split(","))
    if "--tags" not in command or not stages or not stages <= {"current", "pending", "previous"}:
        problems.append(f"README: {command!r}: tag {STAGES_TAG} must name stages")
    if CREATED_TAG in tags:
        try:
            datetime.fromisoformat(tags[CREATED_TAG])
        except ValueError:
            problems.append(f"README: {command!r}: tag {CREATED_TAG} must be an ISO instant")
    return problems


def check_readme_deploy(root: Path = ROOT) -> list[str]:
    """The Deploy section's first run against the code, the stacks and the workflows."""
    problems = []
    section = deploy_section(root)
    infra = root / "infrastructure"
    documents = _workflow_documents(root)
    workflow_text = "\n".join((root / path).read_text(encoding="utf-8") for path in documents)
    for name in sorted(set(re.findall(r"vars\.([A-Z0-9_]+)", workflow_text))):
        if name not in section:
            problems.append(f"README: GitHub variable {name} (used by the workflows) is missing")
    client_ids = {i["client_id_variable"] for i in github_identities(infra).values()}
    for name in sorted(set(re.findall(r"AZURE_[A-Z]+_CLIENT_ID", section)) ^ client_ids):
        problems.append(f"README and bootstrap disagree on the client id variable {name}")
    names = {RotationPolicy().secret_name, ROTATOR_LOGIN}
    for secret in sorted(set(re.findall(r"rates-db-[a-z]+", section)) - names):
        problems.append(f"README: {secret} is no secret the code reads")
    jobs = {
        job["name"]
        for job in _locals(infra / "modules" / "container_apps" / "main.tf")["all_jobs"].values()
    } | {
        str(body.get("name", "")).removeprefix("caj-${var.name}-")
        for _, kind, _, body in resources(infra)
        if kind == "azurerm_container_app_job"
    }
    for job in sorted(
        set(re.findall(r"caj-rates-<env>-(\w+)|-(access|sample|migrate)\b", section))
    ):
        for name in filter(None, job):
            if name not in jobs:
                problems.append(f"README: job {name} does not exist")
    for command in re.findall(r"az keyvault secret set[^`\n]*", section):
        problems.extend(_secret_set_problems(command))
    bootstrap_outputs = _outputs(infra / "bootstrap" / "outputs.tf")
    for output in re.findall(
        r"terraform output -json (\w+)|\(output `(\w+)`\)|\(`(\w+)`\)", section
    ):
        for name in filter(None, output):
            if name not in bootstrap_outputs:
                problems.append(f"README: bootstrap has no output {name}")
    return problems


def check_terraform_inputs(root: Path = ROOT) -> list[str]:
    """Every app-infra variable without a default and missing from a tfvars file is
    passed (TF_VAR_name) by every workflow job that runs terraform: -input=false would
    otherwise stop the first plan or apply."""
    infra = root / "infrastructure"
    variables = {
        name: body
        for block in parse(infra / "app-infra" / "variables.tf").get("variable", [])
        for name, body in block.items()
    }
    values = tfvars(infra).values()
    needed = {
        name
        for name, body in variables.items()
        if "default" not in body and not all(name in v for v in values)
    }
    problems = []
    for path, document in _workflow_documents(root).items():
        for job_name, job in (document.get("jobs") or {}).items():
            if not any(
                "./.github/actions/terraform" in str(s.get("uses", ""))
                for s in job.get("steps", [])
            ):
                continue
            passed = {k.removeprefix("TF_VAR_") for k in (job.get("env") or {})}
            for name in sorted(needed - passed):
                problems.append(f"{path}: {job_name} runs terraform without TF_VAR_{name}")
    return problems


# Built-in roles app-infra may assign, by name → id (Azure's fixed role definition ids).
ROLE_IDS = {
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
}
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_grantable_roles(root: Path = INFRA) -> list[str]:
    """Every role app-infra assigns is one the bootstrap lets the infra identity grant:
    otherwise the first apply fails with AuthorizationFailed."""
    grantable = set()
    for name in ("infra_rbac", "infra_acr_pull_grants"):
        body = _resource(root / "bootstrap", "azurerm_role_assignment", name) or {}
        grantable |= set(GUID.findall(str(body.get("condition", ""))))
    (module,) = [
        m["key_vault"] for m in parse(root / "app-infra" / "main.tf")["module"] if "key_vault" in m
    ]
    problems = []
    for path, kind, name, body in resources(root):
        if kind != "azurerm_role_assignment" or "bootstrap" in path.parts:
            continue
        role = str(body.get("role_definition_name", body.get("role_definition_id")))
        if "data.azurerm_role_definition." in role:
            continue  # a custom role: check_custom_roles_grantable
        roles = {g["role"] for g in module["vault_grants"]} if role.startswith("${") else {role}
        for role in roles:
            if ROLE_IDS.get(role) not in grantable:
                problems.append(
                    f"{path.relative_to(root)}: {name} assigns {role}, which infra may not grant"
                )
    return problems


def check_same_postgres_image(root: Path = ROOT) -> list[str]:
    """CI's service container runs the PostgreSQL image compose runs, digest and all."""
    compose = root / "compose.yaml"
    if not compose.exists():
        return []
    pinned = set(re.findall(r"image:\s*(postgres\S+)", compose.read_text(encoding="utf-8")))
    ci = (root / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    return [
        f"ci.yml: {image} is not the PostgreSQL image of compose.yaml ({sorted(pinned)})"
        for image in re.findall(r"image:\s*(postgres\S+)", ci)
        if image not in pinned
    ]


def check_deploy_reads_outputs(root: Path = ROOT) -> list[str]:
    """What the deploy job reads from `terraform output` is what app-infra outputs."""
    deploy = (root / ".github" / "workflows" / "deploy.yml").read_text(encoding="utf-8")
    read = set(re.findall(r'"([a-z_]+)"', deploy)) | set(
        re.findall(r"outputs\['([a-z_]+)'\]", deploy)
    )
    outputs = _outputs(root / "infrastructure" / "app-infra" / "outputs.tf")
    used = {name for name in read if name.endswith(("_name", "_fqdn"))}
    if not used:
        return ["deploy.yml: reads no app-infra outputs"]
    return [
        f"deploy.yml: reads output {name}, which app-infra lacks" for name in sorted(used - outputs)
    ]


# -- the restore drill, the access-expiry job, Dependabot (issue 11, issue 10) ---------

APPS_MODULE = Path("modules") / "container_apps"
# What `az postgres flexible-server restore|show|delete` needs, by the scope it needs it
# on; the bootstrap's custom roles may hold nothing else.
DRILL_ROLE_ACTIONS = {
    "dr_drill_servers": {
        "Microsoft.DBforPostgreSQL/flexibleServers/read",
        "Microsoft.DBforPostgreSQL/flexibleServers/write",
        "Microsoft.DBforPostgreSQL/flexibleServers/delete",
        "Microsoft.DBforPostgreSQL/locations/azureAsyncOperation/read",
        "Microsoft.DBforPostgreSQL/locations/operationResults/read",
    },
    "dr_drill_network": {
        "Microsoft.Network/virtualNetworks/subnets/join/action",
        "Microsoft.Network/privateDnsZones/join/action",
    },
}
# grant key in drill.tf -> (bootstrap role, what its scope must name)
DRILL_GRANTS = {
    "servers": ("dr_drill_servers", "/resourceGroups/${var.resource_group_name}"),
    "subnet": ("dr_drill_network", "${var.postgres_subnet_id}"),
    "zone": ("dr_drill_network", "${var.postgres_dns_zone_id}"),
}
# A person's name as migration 0009's access.add_person accepts it.
PERSON_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
WEEKLY = re.compile(r"^\d{1,2} \d{1,2} \* \* [0-7]$")
DIGEST_PINNED = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


def _apps_locals(root: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted((root / APPS_MODULE).glob("*.tf")):
        merged.update(_locals(path))
    return merged


def _data(root: Path, kind: str, name: str) -> dict[str, Any] | None:
    for path in tf_files(root):
        for block in parse(path).get("data", []):
            body = block.get(kind, {}).get(name)
            if body is not None:
                return dict(body)
    return None


def _bootstrap_role_names(root: Path) -> dict[str, str]:
    """Custom role name (with the default name_prefix) -> its bootstrap resource name."""
    variables = {
        name: body
        for block in parse(root / "bootstrap" / "variables.tf").get("variable", [])
        for name, body in block.items()
    }
    prefix = str(variables.get("name_prefix", {}).get("default", ""))
    return {
        str(body.get("name", "")).replace("${var.name_prefix}", prefix): name
        for path, kind, name, body in resources(root / "bootstrap")
        if kind == "azurerm_role_definition"
    }


def _looked_up_roles(root: Path, reference: str) -> list[str]:
    """The role names a `data.azurerm_role_definition.X...` reference can resolve to."""
    found = re.search(r"data\.azurerm_role_definition\.(\w+)", reference)
    if found is None:
        return []
    body = _data(root, "azurerm_role_definition", found.group(1)) or {}
    name = str(body.get("name", ""))
    keys = re.findall(r'"([^"]+)"', str(body.get("for_each", "")))
    return [name.replace("${each.key}", key) for key in keys] if keys else [name]


def check_custom_roles_grantable(root: Path = INFRA) -> list[str]:
    """Every custom role app-infra assigns is a bootstrap role the infra identity may
    grant (its id in the RBAC Administrator condition): else AuthorizationFailed."""
    condition = str(
        (_resource(root / "bootstrap", "azurerm_role_assignment", "infra_rbac") or {}).get(
            "condition", ""
        )
    )
    defined = _bootstrap_role_names(root)
    problems = []
    for path, kind, name, body in resources(root):
        if kind != "azurerm_role_assignment" or "bootstrap" in path.parts:
            continue
        for role in _looked_up_roles(root, str(body.get("role_definition_id", ""))):
            resource = defined.get(role)
            if resource is None:
                problems.append(f"{path.relative_to(root)}: {name} assigns {role}, never defined")
            elif f"azurerm_role_definition.{resource}.role_definition_id" not in condition:
                problems.append(
                    f"{path.relative_to(root)}: {name} assigns {role}, which infra may not grant"
                )
    return problems


def check_restore_drill(root: Path = INFRA) -> list[str]:
    """The weekly restore drill exists, has time to restore, runs as its own identity
    whose Azure rights are exactly the two drill roles at their scopes, has the Azure
    CLI pinned by digest next to the app, gets its PostgreSQL login, and is alerted on."""
    problems = []
    job = _resource(root, "azurerm_container_app_job", "drill")
    if job is None:
        return ["apps: no restore-drill job (azurerm_container_app_job.drill)"]
    cron = str((job.get("schedule_trigger_config") or [{}])[0].get("cron_expression", ""))
    if not WEEKLY.match(cron):
        problems.append(f"drill: schedule {cron!r} is not weekly (M H * * D)")
    if int(job.get("replica_timeout_in_seconds", 0)) < 3600:
        problems.append("drill: a restore takes up to an hour: timeout must be >= 3600 s")
    own = 'azurerm_user_assigned_identity.workload["drill"]'
    identities = [str(i) for i in job.get("identity", [{}])[0].get("identity_ids", [])]
    if identities != [f"${{{own}.id}}"]:
        problems.append(f"drill: must run as its own identity only, not {identities}")
    apps = _apps_locals(root)
    images = {str(c.get("image")) for c in apps.get("drill_containers", {}).values()}
    if images != {"${var.image}", "${var.azure_cli_image}"}:
        problems.append(f"drill: containers must be the app's image and the CLI's, not {images}")
    command = str(apps.get("drill_containers", {}).get("restore", {}).get("command", ""))
    script = str(apps.get(command.removeprefix("${local.").removesuffix("}"), ""))
    for needed in ("flexible-server restore", "flexible-server delete", "trap cleanup EXIT"):
        if needed not in script:
            problems.append(f"drill: the restore container never runs {needed!r}")
    variables = {
        name: body
        for block in parse(root / "app-infra" / "variables.tf").get("variable", [])
        for name, body in block.items()
    }
    cli = str(variables.get("azure_cli_image", {}).get("default", ""))
    if not DIGEST_PINNED.match(cli):
        problems.append(f"drill: the Azure CLI image {cli!r} is not pinned by digest")
    problems += _drill_rights(root, own)
    if 'grant-drill ${azurerm_user_assigned_identity.workload["drill"].name}' not in str(
        apps.get("access_bootstrap")
    ):
        problems.append("drill: the access job never makes the drill's PostgreSQL login")
    problems += _job_alerted(root, "dr-drill-failed", "drill_job_name")
    return problems


def _drill_rights(root: Path, own: str) -> list[str]:
    problems = []
    for resource, allowed in DRILL_ROLE_ACTIONS.items():
        role = _resource(root / "bootstrap", "azurerm_role_definition", resource) or {}
        actions = set((role.get("permissions") or [{}])[0].get("actions", []))
        if not actions or actions - allowed:
            problems.append(f"bootstrap: {resource} may only {sorted(allowed)}, has {actions}")
    grants = _apps_locals(root).get("drill_grants", {})
    names = _bootstrap_role_names(root)
    looked_up = _looked_up_roles(root, "data.azurerm_role_definition.drill")
    lookups = {name.rsplit("-", 1)[-1]: name for name in looked_up}
    for key, grant in grants.items():
        expected = DRILL_GRANTS.get(key)
        granted = names.get(lookups.get(str(grant.get("role")), ""))
        if expected is None or granted != expected[0] or expected[1] not in str(grant.get("scope")):
            problems.append(f"drill: grant {key} ({granted} on {grant.get('scope')}) is not needed")
    if set(grants) != set(DRILL_GRANTS):
        problems.append(f"drill: grants {sorted(grants)}, needs exactly {sorted(DRILL_GRANTS)}")
    for path, kind, name, body in resources(root):
        text = json.dumps(body)
        if own.replace('"', '\\"') not in text or kind == "azurerm_container_app_job":
            continue
        if kind == "azurerm_role_assignment" and name == "drill":
            continue
        if kind == "azurerm_role_assignment" and name == "pull" and "AcrPull" in text:
            continue  # every workload pulls the app's image
        if kind != "azurerm_user_assigned_identity":
            problems.append(f"{path.relative_to(root)}: {kind}.{name} gives the drill more rights")
    main = (root / "app-infra" / "main.tf").read_text(encoding="utf-8")
    if re.search(r"principal\s*=\s*\"drill\"|drill_principal", main):
        problems.append("app-infra: the drill's identity gets a Key Vault or other grant")
    return problems


def _job_alerted(root: Path, rule: str, variable: str) -> list[str]:
    rules = _locals(root / "modules" / "alerts" / "main.tf").get("log_rules", {})
    alerts = _locals(root / "modules" / "alerts" / "main.tf").get("job_is", "")
    if rule not in rules:
        return [f"alerts: no {rule} rule"]
    wired = any(
        variable in m.get("alerts", {}) for m in parse(root / "app-infra" / "main.tf")["module"]
    )
    if f"var.{variable}" not in str(alerts) or not wired:
        return [f"alerts: {rule} does not pick the job's lines (var.{variable})"]
    return []


def check_access_expiry(root: Path = INFRA) -> list[str]:
    """`dbaccess access expire` runs every minute as its own identity, which the access
    job makes a person of the workflow (a name 0009 accepts); overdue grants, drift and a
    stalled job are alerted."""
    problems = []
    apps = _apps_locals(root)
    job = apps.get("all_jobs", {}).get("expiry")
    if job is None:
        return ["apps: no access-expiry job (all_jobs.expiry)"]
    if job.get("schedule") != "* * * * *":
        problems.append(f"expiry: runs {job.get('schedule')!r}, not every minute")
    if not str(job.get("command", [""])[-1]).endswith("dbaccess access expire"):
        problems.append(f"expiry: runs {job.get('command')}, not dbaccess access expire")
    own_user = 'user=${azurerm_user_assigned_identity.workload["expiry"].name}'
    if job.get("identity") != "expiry" or own_user not in str(job.get("env")):
        problems.append("expiry: must log in as its own identity, the workflow's person")
    if 'workload["expiry"].name' not in str(apps.get("expiry_person")):
        problems.append("expiry: expiry_person is not the expiry identity's name")
    if "users add ${local.expiry_person} --entra" not in str(apps.get("access_bootstrap")):
        problems.append("expiry: the access job never makes its identity a person")
    identity = _resource(root, "azurerm_user_assigned_identity", "workload") or {}
    expression = str(identity.get("name", ""))
    found = re.search(r'"expiry" \? "(.*?)" : ', expression)
    for environment in ENVIRONMENTS:
        name = (found.group(1) if found else expression).replace(
            '${replace(var.name, "-", "_")}', f"rates_{environment}"
        )
        if (
            not PERSON_NAME.match(name)
            or re.search(r"_r[0-9]+$", name)
            or name.startswith(("rates_", "pg_"))
        ):
            problems.append(f"expiry: identity name {name!r} is no valid person name (0009)")
    rules = _locals(root / "modules" / "alerts" / "main.tf").get("log_rules", {})
    for rule in ("access-overdue", "access-drift"):
        if rule not in rules:
            problems.append(f"alerts: no {rule} rule")
    problems += _job_alerted(root, "access-expiry-stalled", "expiry_job_name")
    return problems


def _ignored(path: Path) -> bool:
    return any(part.startswith(".") or part in ("node_modules",) for part in path.parts)


def check_dependabot_covers_locks(root: Path = ROOT) -> list[str]:
    """Every lock and requirements file is in a Dependabot entry that reads it: uv.lock
    in a `uv` entry's directory; requirements*.txt in a `uv` one's (which reads *.txt and
    *.in there, recompiling `uv pip compile` output) or a `pip` one's."""
    config = yaml.safe_load((root / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    covered: dict[str, set[str]] = {}
    for entry in config.get("updates", []):
        dirs = entry.get("directories") or [entry.get("directory")]
        covered.setdefault(entry["package-ecosystem"], set()).update(
            "/" + str(d).strip("/") for d in dirs if d
        )
    wanted = {"uv.lock": ("uv",), "requirements*.txt": ("uv", "pip")}
    problems = []
    for pattern, ecosystems in wanted.items():
        for path in sorted(root.rglob(pattern)):
            relative = path.relative_to(root)
            if _ignored(relative):
                continue
            directory = "/" + str(relative.parent).strip(".").strip("/")
            if not any(directory in covered.get(e, set()) for e in ecosystems):
                problems.append(
                    f"dependabot: {relative} is in no {'/'.join(ecosystems)} entry ({directory})"
                )
    return problems


def check_pip_audit_locked(root: Path = ROOT) -> list[str]:
    """Every pip-audit in the workflows audits the locked sets, each hash-checked without
    resolving anew: uv.lock (exported) and every requirements*.txt of the repository."""
    requirements = sorted(
        str(p.relative_to(root))
        for p in root.rglob("requirements*.txt")
        if not _ignored(p.relative_to(root))
    )
    problems = []
    audits = 0
    for path, document in workflows(root).items():
        for name, step in _steps(document):
            script = str(step.get("run", ""))
            if "pip-audit" not in script:
                continue
            audits += 1
            where = f"{path.name}: {name}"
            if "uv export --frozen" not in script or "--no-emit-project" not in script:
                problems.append(f"{where}: does not audit uv.lock (uv export --frozen)")
            if "--disable-pip --require-hashes -r" not in script:
                problems.append(f"{where}: must audit requirement files hash-checked, unresolved")
            runs = [
                part
                for line in script.splitlines()
                for part in line.split("&&")
                if re.search(r"pip-audit(\s|$)", part) and "install" not in part
            ]
            if any(" -r " not in part for part in runs):
                problems.append(f"{where}: audits the virtual environment, not the locks")
            if re.search(r"pip install [^\n]*pip-audit(?!==)", script):
                problems.append(f"{where}: installs pip-audit unpinned")
            problems += [f"{where}: never audits {r}" for r in requirements if r not in script]
    if not audits:
        problems.append("workflows: nothing runs pip-audit")
    return problems
