"""What connects the code to the Azure deployment, each invariant shown failing on a
broken copy: the access policy is in the image and the access job applies it; the daily
job alerting unreviewed emergency grants runs, as a person, and its line is alerted; the
notifications Logic App is wired, its URL reaching exactly the notifying jobs as a
secret in the variable the code reads."""

from __future__ import annotations

import contextlib
import io
import logging
import posixpath
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rates_platform.access.notify import Notifier
from rates_platform.access.service import AccessService
from rates_platform.dbaccess.cli import main as dbaccess
from tests.image import parse as parse_dockerfile
from tests.policy import policy
from tests.policy.test_delivery import edit

Check = Callable[[Path], list[str]]
APPS = "infrastructure/modules/container_apps/main.tf"
ALERTS = "infrastructure/modules/alerts/main.tf"
POLICY_FILE = "access-policy.toml"
DAILY = re.compile(r"^\d{1,2} \d{1,2} \* \* \*$")
ALERT_COMMAND = ["dbaccess", "access", "list", "--alert"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the checks read: the infrastructure, the image's build files and
    the deploy script."""
    shutil.copytree(policy.INFRA, tmp_path / "infrastructure")
    shutil.copytree(policy.ROOT / ".github" / "workflows", tmp_path / ".github" / "workflows")
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


def _alert_job(root: Path) -> tuple[str, dict[str, Any]] | None:
    jobs = policy._apps_locals(root / "infrastructure").get("all_jobs", {})
    return next(
        (
            (key, job)
            for key, job in jobs.items()
            if shlex.split(str(job.get("command", [""])[-1]))[-4:] == ALERT_COMMAND
        ),
        None,
    )


def alert_rule_needles(root: Path, job_key: str) -> list[str]:
    """What each alert rule on the job's lines looks for (`Log_s has "..."`)."""
    rules = policy._locals(root / ALERTS).get("log_rules", {})
    return [
        needle
        for rule in rules.values()
        if f"local.job_is.{job_key}" in str(rule.get("query"))
        for needle in re.findall(r'Log_s has \\?"([^"\\]+)', str(rule.get("query")))
    ]


def check_access_alert_job(root: Path) -> list[str]:
    """`dbaccess access list --alert` runs daily as the expiry job's person (the one the
    access job makes), the deploy moves it, and an alert rule reads its lines."""
    found = _alert_job(root)
    if found is None:
        return ["apps: no job runs `dbaccess access list --alert`"]
    key, job = found
    problems = []
    if not DAILY.match(str(job.get("schedule"))):
        problems.append(f"access alert: runs {job.get('schedule')!r}, not daily")
    own_user = 'user=${azurerm_user_assigned_identity.workload["expiry"].name}'
    if job.get("identity") != "expiry" or own_user not in str(job.get("env")):
        problems.append("access alert: must log in as the workflow's person (the expiry identity)")
    if not _option_accepted(ALERT_COMMAND[1:3], ALERT_COMMAND[3:]):
        problems.append("access alert: dbaccess has no `access list --alert`")
    if "access.unreviewed" not in alert_rule_needles(root, key):
        problems.append("alerts: no rule on the access alert job's access.unreviewed lines")
    variables = policy._locals(root / ALERTS).get("job_is", "")
    wired = any(
        "access_alert_job_name" in m.get("alerts", {})
        for m in policy.parse(root / "infrastructure" / "app-infra" / "main.tf")["module"]
    )
    if "var.access_alert_job_name" not in str(variables) or not wired:
        problems.append("alerts: job_is.access_alert does not name the job")
    if "$ACCESS_ALERT_JOB" not in (root / "scripts" / "deploy.sh").read_text(encoding="utf-8"):
        problems.append("deploy.sh: never moves the access alert job to the new image")
    return problems


def _variable(path: Path, name: str) -> dict[str, Any]:
    blocks = policy.parse(path).get("variable", [])
    return next((b[name] for b in blocks if name in b), {})


def _notifying(command: str) -> bool:
    """Whether a job's command runs a `dbaccess` step that notifies (issue 10)."""
    return bool(re.search(r"dbaccess (access (expire|list --alert)|policy apply)", command))


WEBHOOK_SECRET = "access-notify-webhook"  # noqa: S105 - a secret's name, not a secret


def _webhook_from_secret(infra: Path) -> bool:
    """The jobs' ACCESS_NOTIFY_WEBHOOK comes from a job secret holding the variable."""
    job = policy._resource(infra, "azurerm_container_app_job", "this") or {}
    containers = job.get("template", [{}])[0].get("container", [])
    dynamic = [d for c in containers for d in c.get("dynamic", [])]
    secret_env = [
        d["env"] for d in dynamic if "secret_name" in d.get("env", {}).get("content", [{}])[0]
    ]
    secrets = [d["secret"] for d in job.get("dynamic", []) if "secret" in d]
    return any(
        '"ACCESS_NOTIFY_WEBHOOK"' in str(e["for_each"])
        and e["content"][0]["secret_name"] == WEBHOOK_SECRET
        for e in secret_env
    ) and any(
        f'"{WEBHOOK_SECRET}"' in str(sec["for_each"])
        and sec["content"][0].get("value") == "${var.access_notify_webhook}"
        for sec in secrets
    )


def check_notifications_wired(root: Path) -> list[str]:
    """app-infra calls the notifications module (its trigger open to the apps' outbound
    addresses only) and hands its sensitive URL to every notifying job as a secret,
    in ACCESS_NOTIFY_WEBHOOK; the Teams URL comes from a GitHub secret in every
    workflow that plans or applies, and the apps subnet may reach Logic Apps."""
    infra = root / "infrastructure"
    problems = []
    modules = {
        name: body
        for block in policy.parse(infra / "app-infra" / "main.tf").get("module", [])
        for name, body in block.items()
    }
    notifications = next(
        (m for m in modules.values() if m.get("source") == "../modules/notifications"), None
    )
    if notifications is None:
        return ["app-infra: the notifications module is not called"]
    if "module.apps.outbound_ip_addresses" not in str(
        notifications.get("allowed_caller_ip_ranges")
    ):
        problems.append("notifications: the trigger is not limited to the apps' outbound addresses")
    if "module.notifications" not in str(modules.get("apps", {}).get("access_notify_webhook")):
        problems.append("apps: the notifications trigger URL is not passed to the jobs")
    for path, name in (
        (infra / "app-infra" / "variables.tf", "teams_webhook_url"),
        (infra / policy.APPS_MODULE / "variables.tf", "access_notify_webhook"),
    ):
        if _variable(path, name).get("sensitive") is not True:
            problems.append(f"{path.parent.name}: variable {name} is not sensitive")
    if not _webhook_from_secret(infra):
        problems.append("apps: ACCESS_NOTIFY_WEBHOOK is not set from a job secret")
    if "ACCESS_NOTIFY_WEBHOOK" not in policy.env_names_read():
        problems.append("code: nothing reads ACCESS_NOTIFY_WEBHOOK")
    apps = policy._apps_locals(infra)
    wanted = {k for k, j in apps["all_jobs"].items() if _notifying(str(j["command"][-1]))}
    wanted |= {"access"} if _notifying(str(apps.get("access_bootstrap"))) else set()
    given = set(apps.get("notifying_jobs") or [])
    if given != wanted:
        problems.append(f"apps: jobs given the webhook {sorted(given)}, notifying {sorted(wanted)}")
    for key, job_ in apps["all_jobs"].items():
        if "ACCESS_NOTIFY_WEBHOOK" in str(job_.get("env")):
            problems.append(f"apps: job {key} sets ACCESS_NOTIFY_WEBHOOK as a plain value")
    return problems + _teams_url_given_and_trigger_reachable(root)


def _teams_url_given_and_trigger_reachable(root: Path) -> list[str]:
    """Every workflow that plans or applies passes the Teams URL from a GitHub secret (a
    plan without it would remove the Logic App); the apps subnet may reach Logic Apps."""
    problems = []
    infra = root / "infrastructure"
    for workflow in sorted((root / ".github" / "workflows").glob("*.yml")):
        text = workflow.read_text(encoding="utf-8")
        if "TF_VAR_alert_email" in text and not re.search(
            r"TF_VAR_teams_webhook_url: \$\{\{ secrets\.[A-Z_]+ \}\}", text
        ):
            problems.append(f"{workflow.name}: plans or applies without TF_VAR_teams_webhook_url")
    if '"LogicApps"' not in (infra / "modules" / "edge" / "main.tf").read_text(encoding="utf-8"):
        problems.append("edge: the apps subnet may not reach the Logic App (LogicApps)")
    return problems


CHECKS: list[Check] = [
    check_policy_applied_from_the_image,
    check_access_alert_job,
    check_notifications_wired,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_deploy_invariant_holds(check: Check) -> None:
    assert check(policy.ROOT) == []


APP_INFRA = "infrastructure/app-infra/main.tf"
BREACHES: list[tuple[str, str, str, Check, str]] = [
    (
        APP_INFRA,
        'source                   = "../modules/notifications"',
        'source                   = "../modules/notifications-old"',
        check_notifications_wired,
        "the notifications module is not called",
    ),
    (
        APP_INFRA,
        '[for address in module.apps.outbound_ip_addresses : "${address}/32"]',
        '["0.0.0.0/0"]',
        check_notifications_wired,
        "not limited to the apps' outbound addresses",
    ),
    (
        APP_INFRA,
        "module.notifications[0].webhook_url : null",
        "null : null",
        check_notifications_wired,
        "URL is not passed to the jobs",
    ),
    (
        "infrastructure/modules/container_apps/variables.tf",
        "  default     = null\n  sensitive   = true\n",
        "  default     = null\n",
        check_notifications_wired,
        "variable access_notify_webhook is not sensitive",
    ),
    (
        APPS,
        '          secret_name = "access-notify-webhook"',
        '          secret_name = "access-webhook"',
        check_notifications_wired,
        "ACCESS_NOTIFY_WEBHOOK is not set from a job secret",
    ),
    (
        APPS,
        '["access", "expiry", "access_alert"]',
        '["access", "expiry"]',
        check_notifications_wired,
        "given the webhook ['access', 'expiry'], notifying ['access', 'access_alert', 'expiry']",
    ),
    (
        APPS,
        '["access", "expiry", "access_alert"]',
        '["access", "expiry", "access_alert", "audit"]',
        check_notifications_wired,
        "jobs given the webhook",
    ),
    (
        ".github/workflows/scheduled.yml",
        "TF_VAR_teams_webhook_url: ${{ secrets.TEAMS_WEBHOOK_URL }}",
        "TF_VAR_teams_webhook_url: ${{ vars.TEAMS_WEBHOOK_URL }}",
        check_notifications_wired,
        "scheduled.yml: plans or applies without TF_VAR_teams_webhook_url",
    ),
    (
        "infrastructure/modules/edge/main.tf",
        'destination = "LogicApps"',
        'destination = "AzureMonitor"',
        check_notifications_wired,
        "may not reach the Logic App",
    ),
    (
        APPS,
        "exec dbaccess access list --alert",
        "exec dbaccess access list --unreviewed",
        check_access_alert_job,
        "no job runs `dbaccess access list --alert`",
    ),
    (APPS, '"13 8 * * *"', '"13 8 * * 1"', check_access_alert_job, "not daily"),
    (
        APPS,
        '      name     = "access-alert"\n      identity = "expiry"',
        '      name     = "access-alert"\n      identity = "migration"',
        check_access_alert_job,
        "must log in as the workflow's person",
    ),
    (
        ALERTS,
        'where ${local.job_is.access_alert} | where Log_s has \\"access.unreviewed\\"',
        'where ${local.job_is.access_alert} | where Log_s has \\"access.emergency\\"',
        check_access_alert_job,
        "no rule on the access alert job's access.unreviewed lines",
    ),
    (
        "infrastructure/app-infra/main.tf",
        "  access_alert_job_name      = module.apps.access_alert_job_name\n",
        "",
        check_access_alert_job,
        "job_is.access_alert does not name the job",
    ),
    (
        "scripts/deploy.sh",
        '"$EXPIRY_JOB" "$ACCESS_ALERT_JOB"',
        '"$EXPIRY_JOB"',
        check_access_alert_job,
        "never moves the access alert job",
    ),
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


def test_the_alert_rule_matches_the_line_access_list_alert_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule's needle is in what `alert_unreviewed` really logs (a stand-in for the
    database's list: the formatting is the code's own)."""
    service = AccessService("", Notifier([]), Path("/dev/null"))
    row = {"id": 7, "requester": "ann", "role_name": "rates_operator", "emergency": True}
    monkeypatch.setattr(service, "requests", lambda **_: [row])
    with caplog.at_level(logging.WARNING, logger="rates_platform.access"):
        assert service.alert_unreviewed() == [row]
    found = _alert_job(policy.ROOT)
    assert found is not None
    needles = alert_rule_needles(policy.ROOT, found[0])
    assert needles and all(needle in caplog.text for needle in needles), (needles, caplog.text)
    assert "request=7" in caplog.text
