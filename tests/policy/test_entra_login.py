"""The admin jobs' Entra ID login, exactly as Terraform writes it into their command:
the managed identity's token becomes PGPASSWORD for the command it then runs, and a
failed token request stops the job before it connects."""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
from pathlib import Path

from tests.policy import policy

APPS = policy.INFRA / "modules" / "container_apps" / "main.tf"


def entra_login() -> str:
    """The `entra_login` heredoc as Terraform renders it (indentation stripped)."""
    raw = str(policy._locals(APPS)["entra_login"])
    body = raw.removeprefix("<<-EOT\n").rsplit("\n", 1)[0]
    return textwrap.dedent(body) + "\n"


def job_command(job: str) -> list[str]:
    command = [str(c) for c in policy._locals(APPS)["all_jobs"][job]["command"]]
    return [c.replace("${local.entra_login}", entra_login()) for c in command]


def run(tmp_path: Path, command: list[str], fake_python: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, script in {"python": fake_python, "rates": 'echo "rates $* as $PGPASSWORD"'}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "AZURE_CLIENT_ID": "client-1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)


def test_the_token_is_the_password_of_the_command(tmp_path: Path) -> None:
    command = job_command("migration")
    assert command[:2] == ["/bin/sh", "-c"]
    result = run(tmp_path, command, 'echo "token-for-$AZURE_CLIENT_ID"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "rates migrate as token-for-client-1"


def test_no_token_no_connection(tmp_path: Path) -> None:
    result = run(tmp_path, job_command("migration"), "echo 'no identity endpoint' >&2; exit 1")
    assert result.returncode == 1
    assert "rates migrate" not in result.stdout


def test_the_token_request_is_python_for_postgresql_entra() -> None:
    code = re.search(r"python -c '([^']*)'", entra_login())
    assert code is not None
    compile(code.group(1), "<entra_login>", "exec")  # valid Python, as the image runs it
    assert 'ManagedIdentityCredential(client_id=os.environ["AZURE_CLIENT_ID"])' in code.group(1)
    assert "https://ossrdbms-aad.database.windows.net/.default" in code.group(1)


def test_every_admin_job_logs_in_with_entra_as_its_identity() -> None:
    """The PostgreSQL user of a job that logs in with a token is that job's identity."""
    jobs = policy._locals(APPS)["all_jobs"]
    admin_env = str(policy._locals(APPS)["admin_env"])
    assert 'user=${azurerm_user_assigned_identity.workload["migration"].name}' in admin_env
    entra = [k for k, job in jobs.items() if "${local.entra_login}" in " ".join(job["command"])]
    assert {"migration", "access", "sample"} <= set(entra)
    for key in entra:
        job = jobs[key]
        own_user = f'user=${{azurerm_user_assigned_identity.workload["{job["identity"]}"].name}}'
        uses_admin_env = "local.admin_env" in str(job["env"])
        assert own_user in (admin_env if uses_admin_env else str(job["env"])), key
