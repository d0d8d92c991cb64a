"""What connects the code to the Azure deployment, each invariant shown failing on a
broken copy: the access policy is in the image and the access job applies it."""

from __future__ import annotations

import contextlib
import io
import posixpath
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from rates_platform.dbaccess.cli import main as dbaccess
from tests.image import parse as parse_dockerfile
from tests.policy import policy
from tests.policy.test_delivery import edit

Check = Callable[[Path], list[str]]
APPS = "infrastructure/modules/container_apps/main.tf"
POLICY_FILE = "access-policy.toml"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the checks read: the infrastructure, the image's build files and
    the deploy script."""
    shutil.copytree(policy.INFRA, tmp_path / "infrastructure")
    (tmp_path / "scripts").mkdir()
    for name in ("Dockerfile", ".dockerignore", "scripts/deploy.sh"):
        shutil.copy(policy.ROOT / name, tmp_path / name)
    return tmp_path


def access_job_steps(root: Path) -> list[list[str]]:
    """The access job's `&&`-joined steps, each split as `sh` would split it."""
    joined = str(policy._apps_locals(root / "infrastructure")["access_bootstrap"])
    inner = joined.removeprefix('${join(" && ", ["').removesuffix('"])}')
    return [shlex.split(step) for step in inner.split('", "')]


def _option_accepted(command: list[str], options: list[str]) -> bool:
    """Whether dbaccess's own parser knows the subcommand and each option (its --help)."""
    with (
        contextlib.redirect_stdout(io.StringIO()) as out,
        contextlib.redirect_stderr(io.StringIO()),
    ):
        try:
            dbaccess([*command, "--help"])
        except SystemExit as exit_:
            return exit_.code == 0 and all(option in out.getvalue() for option in options)
    return False


def check_policy_applied_from_the_image(root: Path) -> list[str]:
    """The runtime stage copies access-policy.toml into the image, the build context
    admits it, and the access job applies exactly that file right after bootstrap."""
    problems = []
    runtime = parse_dockerfile(root / "Dockerfile")[-1]
    workdir = runtime.last("WORKDIR")
    in_image = {
        posixpath.normpath(posixpath.join(workdir, args.split()[-1]))
        for args in runtime.all("COPY")
        if args.split()[0] == POLICY_FILE
    }
    if not in_image:
        problems.append(f"image: the runtime stage never copies {POLICY_FILE}")
    ignore = (root / ".dockerignore").read_text(encoding="utf-8").splitlines()
    if f"!{POLICY_FILE}" not in ignore:
        problems.append(f".dockerignore: {POLICY_FILE} is not in the build context")
    steps = access_job_steps(root)
    applies = [i for i, step in enumerate(steps) if step[:3] == ["dbaccess", "policy", "apply"]]
    if not applies:
        return [*problems, "access job: never runs `dbaccess policy apply`"]
    step = steps[applies[0]]
    if applies[0] != 1 or steps[0] != ["dbaccess", "bootstrap"]:
        problems.append("access job: `policy apply` does not follow `dbaccess bootstrap`")
    if "--dry-run" in step or not _option_accepted(
        step[1:3], [w for w in step if w.startswith("--")]
    ):
        problems.append(f"access job: {shlex.join(step)!r} applies nothing")
    file_ = step[step.index("--file") + 1] if "--file" in step[:-1] else ""
    if file_ not in in_image:
        problems.append(f"access job: applies {file_!r}, but the image holds {sorted(in_image)}")
    return problems


CHECKS: list[Check] = [check_policy_applied_from_the_image]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_deploy_invariant_holds(check: Check) -> None:
    assert check(policy.ROOT) == []


BREACHES: list[tuple[str, str, str, Check, str]] = [
    (
        "Dockerfile",
        "COPY access-policy.toml ./access-policy.toml\n",
        "",
        check_policy_applied_from_the_image,
        "never copies access-policy.toml",
    ),
    (
        "Dockerfile",
        "COPY access-policy.toml ./access-policy.toml\n",
        "COPY access-policy.toml ./etc/access-policy.toml\n",
        check_policy_applied_from_the_image,
        "but the image holds ['/app/etc/access-policy.toml']",
    ),
    (
        ".dockerignore",
        "!access-policy.toml\n",
        "",
        check_policy_applied_from_the_image,
        "not in the build context",
    ),
    (
        APPS,
        '    "dbaccess policy apply --file /app/access-policy.toml",\n',
        "",
        check_policy_applied_from_the_image,
        "never runs `dbaccess policy apply`",
    ),
    (
        APPS,
        "dbaccess policy apply --file /app/access-policy.toml",
        "dbaccess policy apply --dry-run --file /app/access-policy.toml",
        check_policy_applied_from_the_image,
        "applies nothing",
    ),
    (
        APPS,
        "dbaccess policy apply --file /app/access-policy.toml",
        "dbaccess policy apply --policy /app/access-policy.toml",
        check_policy_applied_from_the_image,
        "applies nothing",
    ),
    (
        APPS,
        '    "dbaccess bootstrap",\n    "dbaccess policy apply --file /app/access-policy.toml",\n',
        '    "dbaccess policy apply --file /app/access-policy.toml",\n    "dbaccess bootstrap",\n',
        check_policy_applied_from_the_image,
        "does not follow `dbaccess bootstrap`",
    ),
]


@pytest.mark.parametrize("breach", BREACHES, ids=[f"{b[3].__name__}:{b[4]}" for b in BREACHES])
def test_each_deploy_breach_is_caught(repo: Path, breach: tuple[str, str, str, Check, str]) -> None:
    path, old, new, check, expected = breach
    edit(repo / path, old, new)
    problems = check(repo)
    assert any(expected in p for p in problems), problems
