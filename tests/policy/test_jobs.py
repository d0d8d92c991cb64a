"""The restore drill, the access-expiry job and the dependency audit, as Azure and GitHub
would run them (issue 11's drill, issue 10's expiry): each invariant shown failing on a
broken copy, and the drill's two containers acted out, exactly as Terraform writes their
commands, through `sh` with stand-in `az` and `python`.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import textwrap
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rates_platform.access import cli as access_cli
from tests.policy import policy
from tests.policy.test_delivery import edit

Check = Callable[[Path], list[str]]
INFRA_CHECKS: list[Check] = [
    policy.check_restore_drill,
    policy.check_custom_roles_grantable,
    policy.check_access_expiry,
    policy.check_env_names,
]
REPO_CHECKS: list[Check] = [policy.check_dependabot_covers_locks, policy.check_pip_audit_locked]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the checks read: infrastructure, pipelines, locks."""
    shutil.copytree(policy.INFRA, tmp_path / "infrastructure")
    shutil.copytree(policy.ROOT / ".github", tmp_path / ".github")
    for path in [*policy.ROOT.glob("requirements*.txt"), policy.ROOT / "uv.lock"]:
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


@pytest.mark.parametrize("check", INFRA_CHECKS, ids=lambda c: c.__name__)
def test_job_invariant_holds(check: Check) -> None:
    assert check(policy.INFRA) == []


@pytest.mark.parametrize("check", REPO_CHECKS, ids=lambda c: c.__name__)
def test_dependency_invariant_holds(check: Check) -> None:
    assert check(policy.ROOT) == []


DRILL = "infrastructure/modules/container_apps/drill.tf"
APPS = "infrastructure/modules/container_apps/main.tf"
BOOTSTRAP = "infrastructure/bootstrap/main.tf"
ALERTS = "infrastructure/modules/alerts/main.tf"
CI = ".github/workflows/ci.yml"
# (file under the copy, old, new, check, expected fragment of a problem)
BREACHES: list[tuple[str, str, str, Check, str]] = [
    (
        DRILL,
        'resource "azurerm_container_app_job" "drill" {',
        'resource "azurerm_container_app_job" "weekly" {',
        policy.check_restore_drill,
        "no restore-drill job",
    ),
    (
        APPS,
        "    expiry = {",
        "    expiry_later = {",
        policy.check_access_expiry,
        "no access-expiry job",
    ),
    (DRILL, '"23 4 * * 1"', '"23 4 * * *"', policy.check_restore_drill, "is not weekly"),
    (
        DRILL,
        "replica_timeout_in_seconds   = 7200",
        "replica_timeout_in_seconds   = 600",
        policy.check_restore_drill,
        "timeout must be >= 3600",
    ),
    (  # the drill borrowing the admin jobs' identity
        DRILL,
        'identity_ids = [azurerm_user_assigned_identity.workload["drill"].id]',
        'identity_ids = [azurerm_user_assigned_identity.workload["migration"].id]',
        policy.check_restore_drill,
        "must run as its own identity",
    ),
    (  # a wildcard in the drill's servers role
        BOOTSTRAP,
        '"Microsoft.DBforPostgreSQL/flexibleServers/delete",',
        '"Microsoft.DBforPostgreSQL/flexibleServers/delete", "Microsoft.DBforPostgreSQL/*",',
        policy.check_restore_drill,
        "dr_drill_servers may only",
    ),
    (  # the servers role on the DNS zone instead of the network role
        DRILL,
        'zone    = { role = "network", scope = var.postgres_dns_zone_id }',
        'zone    = { role = "servers", scope = var.postgres_dns_zone_id }',
        policy.check_restore_drill,
        "grant zone (dr_drill_servers",
    ),
    (  # the network role on every subnet of the group
        DRILL,
        'subnet  = { role = "network", scope = var.postgres_subnet_id }',
        'subnet  = { role = "network", scope = var.postgres_subnet_id }\n'
        '    vnet    = { role = "network", scope = var.resource_group_name }',
        policy.check_restore_drill,
        "grant vnet",
    ),
    (  # Key Vault for the drill: more than restore/show/delete
        "infrastructure/app-infra/main.tf",
        "  vault_grants = [\n",
        '  vault_grants = [\n    { secret = "rates-db-app", principal = "drill", '
        'principal_id = module.apps.api_principal_id, role = "Key Vault Secrets User" },\n',
        policy.check_restore_drill,
        "gets a Key Vault or other grant",
    ),
    (
        "infrastructure/app-infra/variables.tf",
        "@sha256:eedd1fb2d6628c6a6f30c5e0cd31b2fd789151514fa0ab645ff440682e5586b7",
        "",
        policy.check_restore_drill,
        "is not pinned by digest",
    ),
    (
        APPS,
        'grant-drill ${azurerm_user_assigned_identity.workload["drill"].name}',
        "grant-drill nobody",
        policy.check_restore_drill,
        "never makes the drill's PostgreSQL login",
    ),
    (DRILL, "trap cleanup EXIT", "true", policy.check_restore_drill, "'trap cleanup EXIT'"),
    (
        ALERTS,
        "    dr-drill-failed = {",
        "    dr-drill-late = {",
        policy.check_restore_drill,
        "no dr-drill-failed rule",
    ),
    (  # a role the infra identity may not grant: the first apply fails
        BOOTSTRAP,
        ", ${azurerm_role_definition.dr_drill_network.role_definition_id}",
        "",
        policy.check_custom_roles_grantable,
        "assigns rates-dr-drill-network, which infra may not grant",
    ),
    (
        APPS,
        'schedule = "* * * * *"',
        'schedule = "*/5 * * * *"',
        policy.check_access_expiry,
        "not every minute",
    ),
    (  # a name access.add_person refuses: the access job would fail on every deploy
        APPS,
        '"job_expiry_${replace(var.name, "-", "_")}"',
        '"job-expiry-${var.name}"',
        policy.check_access_expiry,
        "is no valid person name",
    ),
    (
        APPS,
        'user=${azurerm_user_assigned_identity.workload["expiry"].name}',
        'user=${azurerm_user_assigned_identity.workload["migration"].name}',
        policy.check_access_expiry,
        "own identity",
    ),
    (
        APPS,
        "dbaccess users add ${local.expiry_person} --entra",
        "true",
        policy.check_access_expiry,
        "never makes its identity a person",
    ),
    (
        ALERTS,
        "    access-expiry-stalled = {",
        "    access-expiry-late = {",
        policy.check_access_expiry,
        "no access-expiry-stalled rule",
    ),
    (
        ALERTS,
        "    access-drift = {",
        "    access-strays = {",
        policy.check_access_expiry,
        "no access-drift rule",
    ),
    (  # the environment variables the drill's shell reads are set, and nothing else is
        DRILL,
        '    DATABASE              = "rates"\n',
        '    DATABASE              = "rates"\n    DRILL_UNUSED          = "1"\n',
        policy.check_env_names,
        "DRILL_UNUSED is set but nothing reads it",
    ),
    (  # the old audit: the venv, not the locks
        CI,
        '            .venv/bin/pip-audit --strict --disable-pip --require-hashes -r "$locked"'
        " || status=1\n",
        "            .venv/bin/pip-audit --strict --skip-editable\n",
        policy.check_pip_audit_locked,
        "audits the virtual environment",
    ),
    (
        CI,
        "requirements-iac.txt requirements-uv.txt; do",
        "requirements-iac.txt; do",
        policy.check_pip_audit_locked,
        "never audits requirements-uv.txt",
    ),
    (
        CI,
        "pip install --quiet pip-audit==2.10.1",
        "pip install --quiet pip-audit",
        policy.check_pip_audit_locked,
        "installs pip-audit unpinned",
    ),
    (
        ".github/dependabot.yml",
        "  - package-ecosystem: uv\n",
        "  - package-ecosystem: pip\n",
        policy.check_dependabot_covers_locks,
        "uv.lock is in no uv entry",
    ),
]


@pytest.mark.parametrize("breach", BREACHES, ids=[b[4] for b in BREACHES])
def test_each_job_breach_is_caught(repo: Path, breach: tuple[str, str, str, Check, str]) -> None:
    file, old, new, check, expected = breach
    edit(repo / file, old, new)
    problems = check(repo / "infrastructure" if check in INFRA_CHECKS else repo)
    assert any(expected in p for p in problems), problems


def test_a_requirements_file_outside_dependabot_is_caught(repo: Path) -> None:
    (repo / "tools").mkdir()
    (repo / "tools" / "requirements-extra.txt").write_text("ruff==0.14.0\n")
    assert policy.check_dependabot_covers_locks(repo) == [
        "dependabot: tools/requirements-extra.txt is in no uv/pip entry (/tools)"
    ]


# --- the drill's two containers, as Terraform writes them, against stand-ins ---------

FAKE_AZ = """#!/bin/sh
echo "az $*" >> "$CALLS"
case "$*" in
  login*) exit "${LOGIN_EXIT:-0}" ;;
  "postgres flexible-server restore"*) sleep "${RESTORE_SECONDS:-0}"; exit "${RESTORE_EXIT:-0}" ;;
  "postgres flexible-server show"*)
    name=$(echo "$*" | sed -n 's/.*--name \\([^ ]*\\).*/\\1/p')
    echo "$name.postgres.database.azure.com" ;;
esac
"""
# `python -c` is the Entra token request; `python -m rates_platform.drdrill` the check.
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-c" ]; then
  [ -z "${TOKEN_FAILS:-}" ] || { echo "no identity endpoint" >&2; exit 1; }
  echo "token-for-$AZURE_CLIENT_ID"; exit 0
fi
echo "python $* password=$PGPASSWORD" >> "$CALLS"
exit "${COMPARE_EXIT:-0}"
"""


def _heredoc(raw: str) -> str:
    return textwrap.dedent(raw.removeprefix("<<-EOT\n").rsplit("\n", 1)[0]) + "\n"


def drill_script(container: str) -> str:
    """A container's /bin/sh -c script as Terraform renders it."""
    apps = policy._apps_locals(policy.INFRA)
    command = str(apps["drill_containers"][container]["command"])
    script = _heredoc(str(apps[command.removeprefix("${local.").removesuffix("}")]))
    return script.replace("${local.entra_login}", _heredoc(str(apps["entra_login"])))


def run_drill(tmp_path: Path, **env: str) -> tuple[int, int, list[str], str]:
    """Both containers at once, sharing one directory; their exit codes, the calls the
    stand-ins saw, and what the containers logged."""
    bin_dir, volume, calls = tmp_path / "bin", tmp_path / "drill", tmp_path / "calls"
    bin_dir.mkdir()
    volume.mkdir()
    calls.touch()
    for name, text in {"az": FAKE_AZ, "python": FAKE_PYTHON}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    base = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "DRILL_DIR": str(volume),
        "DRILL_RESTORE_TIMEOUT": "20",
        "DRILL_COMPARE_TIMEOUT": "20",
        "DRILL_TARGET_AGE_MIN": "15",
        "RESOURCE_GROUP": "rg-rates-dev",
        "SOURCE_SERVER": "psql-rates-dev",
        "DRILL_LOGIN": "id-rates-dev-drill",
        "DATABASE": "rates",
        "AZURE_CLIENT_ID": "client-7",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    }
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def container(name: str) -> None:
        results[name] = subprocess.run(
            ["/bin/sh", "-c", drill_script(name)],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    threads = [threading.Thread(target=container, args=(n,)) for n in ("compare", "restore")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logged = results["restore"].stderr + results["compare"].stderr
    return (
        results["restore"].returncode,
        results["compare"].returncode,
        calls.read_text().splitlines(),
        logged,
    )


def _deleted(calls: list[str]) -> bool:
    return any(
        c.startswith(
            "az postgres flexible-server delete --resource-group rg-rates-dev "
            "--name psql-rates-dev-drill-"
        )
        for c in calls
    )


def test_a_whole_restore_passes_and_the_scratch_server_goes(tmp_path: Path) -> None:
    restore, compare, calls, logged = run_drill(tmp_path, RESTORE_SECONDS="1")
    assert (restore, compare) == (0, 0), logged
    (restored,) = [c for c in calls if "flexible-server restore" in c]
    assert "--source-server psql-rates-dev --restore-time " in restored
    (checked,) = [c for c in calls if c.startswith("python -m rates_platform.drdrill compare")]
    target = restored.split("--restore-time ")[1].split()[0]
    assert f"--target-time {target}" in checked  # both sides use the same point in time
    assert "host=psql-rates-dev.postgres.database.azure.com " in checked
    assert "host=psql-rates-dev-drill-" in checked
    assert "user=id-rates-dev-drill sslmode=verify-full" in checked
    assert checked.endswith("password=token-for-client-7")  # the token, in the env only
    assert "token-for" not in logged
    assert _deleted(calls)
    assert calls.index(next(c for c in calls if "delete" in c)) > calls.index(checked)


def test_a_failed_check_fails_both_and_still_deletes(tmp_path: Path) -> None:
    restore, compare, calls, logged = run_drill(tmp_path, COMPARE_EXIT="1")
    assert (restore, compare) == (1, 1)
    assert "dr-drill: drill failed (exit 1)" in logged  # what the alert rule looks for
    assert _deleted(calls)


def test_inconclusive_is_not_success(tmp_path: Path) -> None:
    restore, compare, calls, _ = run_drill(tmp_path, COMPARE_EXIT="3")
    assert (restore, compare) == (3, 3)
    assert _deleted(calls)


def test_a_failed_restore_compares_nothing(tmp_path: Path) -> None:
    restore, compare, calls, logged = run_drill(tmp_path, RESTORE_EXIT="1")
    assert (restore, compare) == (2, 2)
    assert not any(c.startswith("python") for c in calls)
    assert "the restore itself failed" in logged
    assert _deleted(calls)  # a half-made server goes too


def test_no_token_no_connection_and_the_scratch_server_goes(tmp_path: Path) -> None:
    restore, compare, calls, _ = run_drill(tmp_path, TOKEN_FAILS="yes")  # noqa: S106
    assert (restore, compare) == (1, 1)
    assert not any(c.startswith("python") for c in calls)
    assert _deleted(calls)


def test_no_login_no_restore(tmp_path: Path) -> None:
    restore, compare, calls, logged = run_drill(tmp_path, LOGIN_EXIT="1")
    assert (restore, compare) == (2, 2)
    assert not any("restore --" in c or "delete" in c for c in calls)
    assert "cannot log in" in logged


def test_a_restore_that_outlasts_the_wait_gives_up_and_deletes(tmp_path: Path) -> None:
    restore, compare, calls, logged = run_drill(
        tmp_path, RESTORE_SECONDS="5", DRILL_RESTORE_TIMEOUT="2"
    )
    assert compare == 2 and "no restore after" in logged
    assert restore == 2  # it finds the comparison's verdict once its restore is done
    assert not any(c.startswith("python") for c in calls)
    assert _deleted(calls)


# --- the access job's command, as Terraform writes it, against a stand-in dbaccess ----


def _people_listing(removed: bool) -> str:
    """`dbaccess users list` as the real CLI prints the expiry job's person."""
    buffer = io.StringIO()
    row = {
        "name": "job_expiry_rates_dev",
        "approver": False,
        "groups": [],
        "entra": True,
        "added_at": datetime(2026, 11, 1, tzinfo=UTC),
        "removed_at": datetime(2026, 11, 2, tzinfo=UTC) if removed else None,
    }
    with contextlib.redirect_stdout(buffer):
        access_cli._print_rows(
            [row], False, ("name", "approver", "groups", "entra", "added_at", "removed_at")
        )
    return buffer.getvalue()


def run_access_job(tmp_path: Path, listing: str, fail: str = "") -> tuple[int, list[str]]:
    apps = policy._apps_locals(policy.INFRA)
    names = {
        '${azurerm_user_assigned_identity.workload["audit"].name}': "id-rates-dev-audit",
        '${azurerm_user_assigned_identity.workload["drill"].name}': "id-rates-dev-drill",
        "${local.expiry_person}": "job_expiry_rates_dev",
    }
    joined = str(apps["access_bootstrap"])
    inner = joined.removeprefix('${join(" && ", ["').removesuffix('"])}')
    command = " && ".join(inner.split('", "'))
    for reference, name in names.items():
        command = command.replace(reference, name)
    (tmp_path / "listing").write_text(listing)
    fake = tmp_path / "dbaccess"
    fake.write_text(
        '#!/bin/sh\necho "dbaccess $*" >> "$CALLS"\n'
        '[ "$*" = "users list" ] && cat "$LISTING"\n'
        '[ "$*" = "$FAIL" ] && exit 4\nexit 0\n'
    )
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        env={
            "PATH": f"{tmp_path}:{os.environ['PATH']}",
            "CALLS": str(calls),
            "LISTING": str(tmp_path / "listing"),
            "FAIL": fail,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode, calls.read_text().splitlines()


def test_the_access_job_makes_every_job_login_once(tmp_path: Path) -> None:
    code, calls = run_access_job(tmp_path, "")
    assert code == 0
    assert calls == [
        "dbaccess bootstrap",
        "dbaccess policy apply --file /app/access-policy.toml",
        "dbaccess audit grant-auditor id-rates-dev-audit",
        "dbaccess audit grant-drill id-rates-dev-drill",
        "dbaccess users list",
        "dbaccess users add job_expiry_rates_dev --entra",
    ]


def test_a_second_deploy_does_not_add_the_person_again(tmp_path: Path) -> None:
    code, calls = run_access_job(tmp_path, _people_listing(removed=False))
    assert code == 0
    assert calls[-1] == "dbaccess users list"  # already a person: `users add` would refuse


def test_a_removed_person_is_added_back(tmp_path: Path) -> None:
    code, calls = run_access_job(tmp_path, _people_listing(removed=True))
    assert code == 0
    assert calls[-1] == "dbaccess users add job_expiry_rates_dev --entra"


def test_a_failed_bootstrap_stops_the_access_job(tmp_path: Path) -> None:
    code, calls = run_access_job(tmp_path, "", fail="bootstrap")
    assert code == 4
    assert calls == ["dbaccess bootstrap"]
