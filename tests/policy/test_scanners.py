"""The scanners `make iac-check` runs do fail on the breaches they exist for."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.policy import policy

IAC_BIN = Path(os.environ.get("IAC_BIN", policy.ROOT / ".venv-iac" / "bin"))
pytestmark = pytest.mark.skipif(
    not (IAC_BIN / "checkov").exists(),
    reason=f"scanners not installed in {IAC_BIN}: run `make iac-check` once (make test does)",
)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull}
    return subprocess.run(
        [str(IAC_BIN / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )


def checkov_terraform(directory: Path) -> subprocess.CompletedProcess[str]:
    return run(
        "checkov",
        "--quiet",
        "--compact",
        "--skip-download",
        "--framework",
        "terraform",
        "-d",
        str(directory),
        cwd=directory.parent,
    )


def test_checkov_fails_on_a_public_key_vault(tmp_path: Path) -> None:
    module = tmp_path / "keyvault"
    shutil.copytree(policy.INFRA / "modules" / "keyvault", module)
    main = module / "main.tf"
    main.write_text(
        main.read_text()
        .replace("public_network_access_enabled = false", "public_network_access_enabled = true")
        .replace('default_action = "Deny"', 'default_action = "Allow"')
    )
    result = checkov_terraform(module)
    assert result.returncode == 1, result.stdout
    assert "CKV_AZURE_109" in result.stdout  # "Key Vault allows public network access"


def test_checkov_passes_the_real_key_vault() -> None:
    result = checkov_terraform(policy.INFRA / "modules" / "keyvault")
    assert result.returncode == 0, result.stdout


def test_zizmor_fails_on_an_unpinned_action(tmp_path: Path) -> None:
    shutil.copytree(policy.ROOT / ".github", tmp_path / ".github")
    ci = tmp_path / ".github" / "workflows" / "ci.yml"
    ci.write_text(
        ci.read_text().replace(
            "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2",
            "actions/checkout@v4",
        )
    )
    result = run("zizmor", "--offline", "--config", ".github/zizmor.yml", ".github", cwd=tmp_path)
    assert result.returncode != 0
    assert "unpinned-uses" in result.stdout + result.stderr


def test_workflow_schema_fails_on_a_malformed_job(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    steps: not-a-list\n")
    result = run(
        "check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(broken), cwd=tmp_path
    )
    assert result.returncode == 1, result.stdout
