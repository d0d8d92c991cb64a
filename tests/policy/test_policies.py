"""The infrastructure and pipeline invariants hold, and each check catches a breach."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.policy import policy

CHECKS: list[Callable[[Path], list[str]]] = [
    policy.check_providers_pinned,
    policy.check_variables_described,
    policy.check_resources_tagged,
    policy.check_no_secrets_in_tfvars,
    policy.check_environments,
    policy.check_data_services_private,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_infrastructure_invariant_holds(check: Callable[[Path], list[str]]) -> None:
    assert check(policy.INFRA) == []


def test_pipeline_invariants_hold() -> None:
    assert policy.check_workflows(policy.ROOT) == []


@pytest.fixture
def infra_copy(tmp_path: Path) -> Path:
    target = tmp_path / "infrastructure"
    shutil.copytree(policy.INFRA, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


BREACHES = [
    (
        "modules/keyvault/main.tf",
        "public_network_access_enabled = false",
        "public_network_access_enabled = true",
        policy.check_data_services_private,
        "key vault",
    ),
    (
        "modules/postgres/main.tf",
        "public_network_access_enabled = false",
        "public_network_access_enabled = true",
        policy.check_data_services_private,
        "postgres",
    ),
    (
        "app-infra/environments/prod.tfvars",
        "zone_redundant_ha     = true",
        "zone_redundant_ha     = false",
        policy.check_environments,
        "prod: zone_redundant_ha",
    ),
    (
        "app-infra/environments/prod.tfvars",
        "min_replicas          = 2",
        "min_replicas          = 1",
        policy.check_environments,
        "min_replicas",
    ),
    (
        "app-infra/environments/dev.tfvars",
        "public_ingress        = false",
        "public_ingress        = true",
        policy.check_environments,
        "dev: must not be reachable",
    ),
    (
        "app-infra/environments/pre.tfvars",
        'environment           = "pre"',
        'environment           = "pre"\ndb_password           = "hunter2hunter2"',
        policy.check_no_secrets_in_tfvars,
        "db_password",
    ),
    (
        "app-infra/terraform.tf",
        'version = "4.39.0"',
        'version = ">= 4.0"',
        policy.check_providers_pinned,
        "azurerm not pinned",
    ),
    (
        "modules/monitoring/main.tf",
        "  tags                = var.tags\n",
        "",
        policy.check_resources_tagged,
        "azurerm_log_analytics_workspace.this has no tags",
    ),
    (
        "modules/network/variables.tf",
        '  description = "Azure region."\n',
        "",
        policy.check_variables_described,
        "variable location has no description",
    ),
]


@pytest.mark.parametrize("breach", BREACHES, ids=[b[4] for b in BREACHES])
def test_each_breach_is_caught(
    infra_copy: Path, breach: tuple[str, str, str, Callable[[Path], list[str]], str]
) -> None:
    file, old, new, check, expected = breach
    edit(infra_copy / file, old, new)
    problems = check(infra_copy)
    assert any(expected in p for p in problems), problems


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    shutil.copytree(policy.ROOT / ".github", tmp_path / ".github")
    return tmp_path


def test_an_unpinned_action_is_caught(repo_copy: Path) -> None:
    edit(
        repo_copy / ".github/workflows/ci.yml",
        "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2",
        "actions/checkout@v4",
    )
    assert any(
        "actions/checkout@v4 without a commit SHA" in p for p in policy.check_workflows(repo_copy)
    )


def test_a_placeholder_job_is_caught(repo_copy: Path) -> None:
    edit(
        repo_copy / ".github/workflows/ci.yml",
        "      - run: make lint typecheck",
        '      - run: echo "lint goes here"',
    )
    assert any("only echoes" in p for p in policy.check_workflows(repo_copy))
