"""Delivery invariants across files (issue 11), each shown failing on a broken copy.

What Azure and GitHub would otherwise only reveal on a first deploy: OIDC subjects that
match no workflow job, a container that cannot verify PostgreSQL's certificate, a
serving identity that can read another login, a password in state, an unreachable
internal environment, a pipeline that never applies, tags before validation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.policy import policy

Check = Callable[[Path], list[str]]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the checks read: the infrastructure and the pipelines."""
    shutil.copytree(policy.INFRA, tmp_path / "infrastructure")
    shutil.copytree(policy.ROOT / ".github", tmp_path / ".github")
    for name in ("README.md", "Dockerfile", "compose.yaml"):
        shutil.copy(policy.ROOT / name, tmp_path / name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def oidc(root: Path) -> list[str]:
    return policy.check_oidc_federation(root)


INFRA_CHECKS: list[Check] = [
    policy.check_database_tls,
    policy.check_env_names,
    policy.check_key_vault_least_privilege,
    policy.check_first_run_infra,
    policy.check_state_access,
    policy.check_grantable_roles,
]
PIPELINE_CHECKS: list[Check] = [
    oidc,
    policy.check_pipeline_order,
    policy.check_pipeline_gates,
    policy.check_workflows,
    policy.check_readme_deploy,
    policy.check_terraform_inputs,
    policy.check_same_postgres_image,
    policy.check_deploy_reads_outputs,
]


@pytest.mark.parametrize("check", INFRA_CHECKS, ids=lambda c: c.__name__)
def test_infrastructure_delivery_invariant_holds(check: Check) -> None:
    assert check(policy.INFRA) == []


@pytest.mark.parametrize("check", PIPELINE_CHECKS, ids=lambda c: c.__name__)
def test_pipeline_delivery_invariant_holds(check: Check) -> None:
    assert check(policy.ROOT) == []


def test_every_azure_login_is_checked() -> None:
    """The OIDC check sees the jobs it must: plans, drift, build, scan and deploys."""
    documents = policy._workflow_documents(policy.ROOT)
    actions = {k: v for k, v in documents.items() if k.endswith("action.yml")}
    logging_in = {
        f"{path}:{name}"
        for path, document in documents.items()
        for name, job in (document.get("jobs") or {}).items()
        if policy._azure_logins(job, actions)
    }
    assert logging_in == {
        ".github/workflows/infra.yml:plan",
        ".github/workflows/scheduled.yml:drift",
        ".github/workflows/scheduled.yml:image",
        ".github/workflows/main.yml:build",
        ".github/workflows/deploy.yml:deploy",
    }


# (file under the copy, old, new, check, expected fragment of a problem)
BREACHES: list[tuple[str, str, str, Check, str]] = [
    (  # the reported blocker: a plan identity federated to `prod` instead of `prod-plan`
        "infrastructure/bootstrap/locals.tf",
        'role = "plan", github_environments = ["prod-plan"]',
        'role = "plan", github_environments = ["prod"]',
        oidc,
        "AZURE_PLAN_CLIENT_ID in environment 'prod-plan'",
    ),
    (  # a plan job logging in as the environment's infra (write) identity
        ".github/workflows/infra.yml",
        "client-id: ${{ vars.AZURE_PLAN_CLIENT_ID }}",
        "client-id: ${{ vars.AZURE_INFRA_CLIENT_ID }}",
        oidc,
        "AZURE_INFRA_CLIENT_ID in environment 'dev-plan'",
    ),
    (  # the old build job: the shared deploy identity, in `build`
        ".github/workflows/main.yml",
        "client-id: ${{ vars.AZURE_BUILD_CLIENT_ID }}",
        "client-id: ${{ vars.AZURE_DEPLOY_CLIENT_ID }}",
        oidc,
        "AZURE_DEPLOY_CLIENT_ID in environment 'build'",
    ),
    (
        ".github/workflows/main.yml",
        "    environment: build\n",
        "",
        oidc,
        "build logs in to Azure outside any GitHub environment",
    ),
    (
        "infrastructure/modules/container_apps/main.tf",
        "sslrootcert=${local.ca_bundle}",
        "sslrootcert=system",
        policy.check_database_tls,
        "sslrootcert",
    ),
    (
        "infrastructure/modules/container_apps/main.tf",
        "    SSL_CERT_FILE   = local.ca_bundle\n",
        "",
        policy.check_database_tls,
        "SSL_CERT_FILE",
    ),
    (
        "infrastructure/modules/container_apps/main.tf",
        'DB_SECRET_NAME  = "rates-db-app"',
        'DB_SECRETNAME   = "rates-db-app"',
        policy.check_env_names,
        "DB_SECRETNAME is set but nothing reads it",
    ),
    (  # the API reading the rotator's login
        "infrastructure/app-infra/main.tf",
        '{ secret = "rates-db-rotator", principal = "rotation"',
        '{ secret = "rates-db-rotator", principal = "api"',
        policy.check_key_vault_least_privilege,
        "api serves traffic",
    ),
    (  # a vault-wide role, as before
        "infrastructure/modules/keyvault/main.tf",
        'scope                = "${azurerm_key_vault.this.id}/secrets/${each.value.secret}"',
        "scope                = azurerm_key_vault.this.id",
        policy.check_key_vault_least_privilege,
        "on the whole vault",
    ),
    (
        "infrastructure/app-infra/main.tf",
        '{ secret = "rates-db-app", principal = "rotation"',
        '{ secret = "rates-db-migrator", principal = "rotation"',
        policy.check_key_vault_least_privilege,
        "rates-db-migrator is no secret the code reads",
    ),
    (
        "infrastructure/modules/postgres/main.tf",
        "administrator_password_wo         =",
        "administrator_password            =",
        policy.check_first_run_infra,
        "write-only",
    ),
    (
        "infrastructure/modules/network/outputs.tf",
        "  depends_on  = [azurerm_private_dns_zone_virtual_network_link.zones]\n",
        "",
        policy.check_first_run_infra,
        "postgres_dns_zone_id must depend",
    ),
    (
        "infrastructure/modules/container_apps/main.tf",
        '  infrastructure_resource_group_name = "ME_cae-${var.name}"\n',
        "",
        policy.check_first_run_infra,
        "#28727",
    ),
    (
        "infrastructure/modules/network/main.tf",
        "source_address_prefix      = azurerm_subnet.runners.address_prefixes[0]",
        "source_address_prefix      = azurerm_subnet.apps.address_prefixes[0]",
        policy.check_first_run_infra,
        "accept the runner subnet",
    ),
    (
        "infrastructure/modules/network/main.tf",
        '  name                = "*"\n',
        '  name                = "api"\n',
        policy.check_first_run_infra,
        "wildcard record",
    ),
    (
        "infrastructure/modules/alerts/main.tf",
        "    access-overdue = {",
        "    access-late = {",
        policy.check_first_run_infra,
        "access-overdue",
    ),
    (  # the reported blocker: AcrPull on a registry the infra identity cannot touch
        "infrastructure/bootstrap/main.tf",
        'resource "azurerm_role_assignment" "infra_acr_pull_grants" {',
        'resource "azurerm_role_assignment" "removed" {',
        policy.check_grantable_roles,
        "assigns AcrPull, which infra may not grant",
    ),
    (
        "infrastructure/bootstrap/main.tf",
        ", ba92f5b4-2d11-453d-a403-e96b0029c9fe,",
        ",",
        policy.check_grantable_roles,
        "assigns Storage Blob Data Contributor",
    ),
    (  # the deploy identity reading state again
        "infrastructure/bootstrap/main.tf",
        "local.by_role.plan\n  scope                = azurerm_storage_container",
        "local.by_role.deploy\n  scope                = azurerm_storage_container",
        policy.check_state_access,
        "local.by_role.deploy",
    ),
    (
        ".github/workflows/main.yml",
        "-c rules.tsv -r zap-report.html",
        "-c rules.tsv -r zap-report.html -I",
        policy.check_pipeline_gates,
        "ZAP with -I",
    ),
    (
        ".github/workflows/main.yml",
        "gh label create change",
        "gh label list --search change",
        policy.check_pipeline_gates,
        "label change used, never created",
    ),
    (
        ".github/workflows/ci.yml",
        "image: postgres:16.10-alpine@sha256:",
        "image: postgres:16.10-alpine # @sha256:",
        policy.check_pipeline_gates,
        "postgres:16.10-alpine is not pinned",
    ),
    (
        "Dockerfile",
        "@sha256:",  # the first base image
        " # sha256:",
        policy.check_pipeline_gates,
        "Dockerfile: image python:",
    ),
    (  # the tag pushed right after the deploy, before any validation
        ".github/workflows/main.yml",
        "needs: [build, prod-verify]",
        "needs: [build, prod]",
        policy.check_pipeline_order,
        "release tag must wait",
    ),
    (
        ".github/workflows/main.yml",
        "needs: [build, dev-e2e]",
        "needs: [build]",
        policy.check_pipeline_order,
        "dev → pre → prod",
    ),
    (
        ".github/workflows/main.yml",
        "python3 scripts/smoke.py http://127.0.0.1:3000 --sample-data --wait 300 || status=$?",
        "true",
        policy.check_pipeline_order,
        "before its push",
    ),
    (
        ".github/workflows/infra.yml",
        'gh pr comment "$PR"',
        'cat comment.md # "$PR"',
        policy.check_pipeline_order,
        "commented",
    ),
    (  # the old first run: an administrator login nothing reads, seeded by hand
        "README.md",
        "4. **Push to main**",
        "4. Store `rates-db-migrator` (the administrator) in Key Vault.\n5. **Push to main**",
        policy.check_readme_deploy,
        "rates-db-migrator is no secret the code reads",
    ),
    (  # a seeding command in the wrong shape (the crash of the issue)
        "README.md",
        "4. **Push to main**",
        "4. `az keyvault secret set --vault-name kv-rates-dev --name rates-db-rotator "
        '--value \'{"user": "rates_rotator"}\' --tags stage=current`\n5. **Push**',
        policy.check_readme_deploy,
        "username and password",
    ),
    (
        "README.md",
        "and `PROD_API_APP_NAME` (`ca-rates-prod-api`)",
        "",
        policy.check_readme_deploy,
        "GitHub variable PROD_API_APP_NAME",
    ),
    (
        "README.md",
        "`AZURE_PLAN_CLIENT_ID` or",
        "`AZURE_READER_CLIENT_ID` or",
        policy.check_readme_deploy,
        "AZURE_READER_CLIENT_ID",
    ),
    (
        "README.md",
        "(`registry_login_server`)",
        "(`registry_server`)",
        policy.check_readme_deploy,
        "no output registry_server",
    ),
    (
        "infrastructure/app-infra/outputs.tf",
        'output "access_job_name" {',
        'output "access_job" {',
        policy.check_deploy_reads_outputs,
        "reads output access_job_name",
    ),
    (  # a plan that would stop at an input prompt under -input=false
        ".github/workflows/infra.yml",
        "      TF_VAR_alert_email: ${{ vars.ALERT_EMAIL }}\n",
        "",
        policy.check_terraform_inputs,
        "plan runs terraform without TF_VAR_alert_email",
    ),
    (  # one release-wide group again would stall dev while prod waits
        ".github/workflows/main.yml",
        "    concurrency:\n      group: build-${{ github.ref }}\n      cancel-in-progress: false\n",
        "",
        policy.check_workflows,
        "no concurrency group for build",
    ),
]


@pytest.mark.parametrize("breach", BREACHES, ids=[b[4] for b in BREACHES])
def test_each_delivery_breach_is_caught(
    repo: Path, breach: tuple[str, str, str, Check, str]
) -> None:
    file, old, new, check, expected = breach
    edit(repo / file, old, new)
    root = repo / "infrastructure" if check in INFRA_CHECKS else repo
    problems = check(root)
    assert any(expected in p for p in problems), problems


# --- scripts/deploy.sh against a stand-in `az` that records what it is asked ------

FAKE_AZ = """#!/usr/bin/env bash
echo "$*" >> "$AZ_LOG"
name=$(echo "$*" | sed -n 's/.*--name \\([^ ]*\\).*/\\1/p')
case "$*" in
  "containerapp job start "*) echo "exec-$name" ;;
  "containerapp job execution show "*)
    if [ "$name" = "${FAIL_JOB:-}" ]; then echo Failed; else echo Succeeded; fi ;;
  "containerapp show "*) echo rev-1 ;;
  "containerapp revision show "*) echo Healthy ;;
esac
"""


def run_deploy(tmp_path: Path, **env: str) -> tuple[int, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ)
    az.chmod(0o755)
    log = tmp_path / "az.log"
    log.touch()
    base = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "AZ_LOG": str(log),
        "POLL_SECONDS": "0",
        "IMAGE": "cr.example/rates@sha256:" + "a" * 64,
        "RESOURCE_GROUP": "rg-rates-dev",
        "API": "ca-rates-dev-api",
        "ROTATION_JOB": "caj-rates-dev-rotate",
        "MIGRATION_JOB": "caj-rates-dev-migrate",
        "ACCESS_JOB": "caj-rates-dev-access",
        "SAMPLE_JOB": "caj-rates-dev-sample",
        "AUDIT_JOB": "caj-rates-dev-audit",
        "EXPIRY_JOB": "caj-rates-dev-expire",
        "ACCESS_ALERT_JOB": "caj-rates-dev-access-alert",
        "DRILL_JOB": "caj-rates-dev-drill",
    }
    result = subprocess.run(
        [str(policy.ROOT / "scripts" / "deploy.sh")],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, log.read_text().splitlines()


def started(calls: list[str]) -> list[str]:
    return [c.split()[4] for c in calls if c.startswith("containerapp job start")]


def test_deploy_runs_the_first_run_order(tmp_path: Path) -> None:
    code, calls = run_deploy(tmp_path)
    assert code == 0, calls
    assert started(calls) == [
        "caj-rates-dev-migrate",
        "caj-rates-dev-access",
        "caj-rates-dev-sample",
    ]
    api_update = calls.index(next(c for c in calls if c.startswith("containerapp update")))
    last_job = calls.index(
        next(c for c in calls if "execution show --name caj-rates-dev-sample" in c)
    )
    assert api_update > last_job  # the API revision only after every job succeeded
    assert all("--image cr.example/rates@sha256:" in c for c in calls if " update " in f" {c} ")


def test_deploy_without_a_sample_job_skips_it(tmp_path: Path) -> None:
    code, calls = run_deploy(tmp_path, SAMPLE_JOB="")
    assert code == 0, calls
    assert started(calls) == ["caj-rates-dev-migrate", "caj-rates-dev-access"]


def test_a_failed_migration_stops_the_deploy(tmp_path: Path) -> None:
    code, calls = run_deploy(tmp_path, FAIL_JOB="caj-rates-dev-migrate")
    assert code == 1
    assert started(calls) == ["caj-rates-dev-migrate"]
    assert not any(c.startswith("containerapp update") for c in calls)


def terraform_jobs(env: str = "rates-dev") -> dict[str, str | None]:
    """Every Container Apps job the Terraform defines (as named in ``env``), with the
    container that runs the app's image where the job has more than one."""
    apps = policy._apps_locals(policy.INFRA)
    jobs: dict[str, str | None] = {
        f"caj-{env}-{job['name']}": None for job in apps["all_jobs"].values()
    }
    for _, kind, name, body in policy.resources(policy.INFRA):
        if kind == "azurerm_container_app_job" and name != "this":
            containers = apps.get(f"{name}_containers", {})
            app = [key for key, c in containers.items() if c.get("image") == "${var.image}"]
            assert len(app) == 1, f"{name}: no single container runs the app's image"
            jobs[str(body["name"]).replace("${var.name}", env)] = app[0]
    return jobs


def image_updates(calls: list[str]) -> dict[str, tuple[str | None, str]]:
    """Job name -> (--container-name, --image) of each `az containerapp job update`."""
    updates: dict[str, tuple[str | None, str]] = {}
    for call in calls:
        words = call.split()
        if words[:3] == ["containerapp", "job", "update"] and "--image" in words:
            options = dict(zip(words[3::2], words[4::2], strict=False))
            updates[options["--name"]] = (options.get("--container-name"), options["--image"])
    return updates


def test_deploy_moves_every_job_the_terraform_defines_to_the_new_image(tmp_path: Path) -> None:
    code, calls = run_deploy(tmp_path)
    assert code == 0, calls
    jobs = terraform_jobs()
    assert {"caj-rates-dev-audit", "caj-rates-dev-expire", "caj-rates-dev-drill"} <= set(jobs)
    assert jobs["caj-rates-dev-drill"] == "compare"  # the other container is the Azure CLI's
    image = "cr.example/rates@sha256:" + "a" * 64
    assert image_updates(calls) == {name: (container, image) for name, container in jobs.items()}


def test_deploy_refuses_to_start_without_a_scheduled_job_name(tmp_path: Path) -> None:
    code, calls = run_deploy(tmp_path, DRILL_JOB="")
    assert code != 0
    assert calls == []  # nothing deployed by halves
