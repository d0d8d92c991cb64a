"""The container image without a container engine: the Dockerfile read and acted out.

`Dockerfile` is parsed (stages, ENV, WORKDIR, COPY, RUN, USER, ENTRYPOINT, CMD,
HEALTHCHECK); `install` runs the build stage's own `uv sync` lines into a directory
standing for the image's filesystem, so what the tests start is exactly what the
image ships: the locked dependencies and the app, not editable, from uv.lock.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ROOT

DOCKERFILE = ROOT / "Dockerfile"
UV = Path(sys.executable).parent / "uv"  # make venv installs it from requirements-uv.txt
# What a container sees besides the image's ENV: Docker's default PATH, HOME=/ for a user
# without a home, and the python image's LANG.
CONTAINER_BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/",
    "LANG": "C.UTF-8",
}
CONTAINER_TMP = "/tmp"  # noqa: S108 - the image's own /tmp, mapped to a private directory


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        if not found:
            raise AssertionError(f"no {keyword} in the stage FROM {self.base}")
        return found[-1]

    def env(self) -> dict[str, str]:
        """Docker's base environment and the stage's ENV, ``$NAME`` expanded as Docker does."""
        values = dict(CONTAINER_BASE_ENV)
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                values[key] = re.sub(r"\$(\w+)", lambda m: values.get(m[1], ""), value)
        return values


def parse(path: Path = DOCKERFILE) -> list[Stage]:
    """Instructions per stage; continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.endswith("\\"):
            pending += raw[:-1].strip() + " "
            continue
        if (pending + raw).strip():
            lines.append(pending + raw.strip())
        pending = ""
    stages: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def healthcheck_command(stage: Stage) -> list[str]:
    _, _, command = stage.last("HEALTHCHECK").partition("CMD ")
    parsed: list[str] = json.loads(command)
    return parsed


def start_command(stage: Stage) -> list[str]:
    entrypoint: list[str] = json.loads(stage.last("ENTRYPOINT"))
    cmd: list[str] = json.loads(stage.last("CMD"))
    return entrypoint + cmd


@dataclass(frozen=True)
class InstalledImage:
    """The image's filesystem paths, each mapped to a directory on this machine."""

    root: Path
    paths: dict[str, Path]  # container path -> host path
    env: dict[str, str]  # the runtime stage's ENV, container paths mapped
    workdir: Path
    user: str  # the runtime stage's USER
    runtime: Stage

    @property
    def venv(self) -> Path:
        return self.paths["/opt/venv"]

    def map(self, value: str) -> str:
        """``value`` with each container path (as a whole path prefix) made a host path."""
        prefixes = "|".join(re.escape(p) for p in sorted(self.paths, key=len, reverse=True))
        return re.sub(rf"(?<![\w/])({prefixes})(?=/|:|$)", lambda m: str(self.paths[m[1]]), value)


def _copy(args: str, workdir: Path) -> None:
    """COPY as Docker does it: files into a directory target (``dir/``), a directory's
    contents into its target, or one file to a file target."""
    *sources, target = args.split()
    destination = workdir / target
    for source in sources:
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(
                path,
                destination,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )
        else:
            file_target = destination / path.name if target.endswith("/") else destination
            file_target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, file_target)


def image_python() -> str:
    """A Python 3.11 any user may run (the image's user cannot enter root's home)."""
    for candidate in ("/usr/local/bin/python3.11", "/usr/bin/python3.11"):
        if os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


def install(root: Path) -> InstalledImage:
    """Act out the build stage's COPY and `uv sync` lines, then the runtime's COPY lines.

    The only change: `--no-cache` is dropped, so uv may take the wheels from its cache;
    it checks every file against uv.lock's hashes either way.
    """
    build, runtime = parse()[0], parse()[-1]
    build_env = build.env()
    venv_in_image = build_env["UV_PROJECT_ENVIRONMENT"]
    paths = {venv_in_image: root / "venv", CONTAINER_TMP: root / "tmp"}
    context = root / "build"
    context.mkdir(parents=True)
    for args in build.all("COPY"):
        _copy(args, context)
    environment = {
        **os.environ,
        **{k: v for k, v in build_env.items() if k not in CONTAINER_BASE_ENV},  # uv's cache
        "UV_PROJECT_ENVIRONMENT": str(paths[venv_in_image]),
        "UV_PYTHON": image_python(),  # the image has one Python; so does this emulation
    }
    environment.pop("VIRTUAL_ENV", None)
    syncs = [shlex.split(a) for a in build.all("RUN") if a.startswith("uv sync")]
    assert syncs, "the build stage installs nothing with uv sync"
    for command in syncs:
        argv = [str(UV), *[a for a in command[1:] if a != "--no-cache"]]
        result = subprocess.run(
            argv,
            cwd=context,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stderr}"
    workdir_in_image = runtime.last("WORKDIR")
    paths[workdir_in_image] = root / "app"
    for args in runtime.all("COPY"):
        if not args.startswith("--from="):  # --from=build: the venv, already in place
            _copy(args, paths[workdir_in_image])
    paths[CONTAINER_TMP].mkdir()
    paths[CONTAINER_TMP].chmod(0o1777)
    image = InstalledImage(root, paths, {}, paths[workdir_in_image], runtime.last("USER"), runtime)
    for args in runtime.all("RUN"):
        _run(image, args)
    env = {key: image.map(value) for key, value in runtime.env().items()}
    return InstalledImage(root, paths, env, image.workdir, image.user, runtime)


def _add_account(words: list[str]) -> None:
    """The image's group or user, added here too (as root) unless its id exists: the
    processes run as that uid, and some look their name up (getpass, yoyo's log)."""
    if os.geteuid() != 0:
        return  # the processes run as the current user then
    number = int(words[words.index("--gid" if words[0] == "groupadd" else "--uid") + 1])
    try:
        (grp.getgrgid if words[0] == "groupadd" else pwd.getpwuid)(number)
    except KeyError:
        subprocess.run(words, check=True, capture_output=True, timeout=30)


def _run(image: InstalledImage, args: str) -> None:
    """The runtime stage's RUN lines, one `&&` step at a time: directories it makes
    (`install -d`, with owner and mode), files it checks (`test -s`) and the accounts it
    adds are acted out; any other step fails, so a new one gets emulated too."""
    env = image.runtime.env()
    for step in args.split("&&"):
        words = [re.sub(r"\$(\w+)", lambda m: env.get(m[1], ""), w) for w in shlex.split(step)]
        if words[:2] == ["test", "-s"]:
            assert Path(words[2]).stat().st_size > 0, f"RUN {step}: {words[2]} is empty"
        elif words[0] in ("groupadd", "useradd"):
            _add_account(words)
        elif words[:2] == ["install", "-d"]:
            options = dict(zip(words[2:-1:2], words[3:-1:2], strict=True))
            target = words[-1]
            if image.map(target) == target:  # not below a mapped directory: map it
                image.paths[target] = image.root / target.lstrip("/")
            directory = Path(image.map(target))
            directory.mkdir(parents=True)
            directory.chmod(int(options.get("-m", "755"), 8))
            if os.geteuid() == 0:
                os.chown(directory, int(options["-o"]), int(options["-g"]))
        else:
            raise AssertionError(f"the image emulation does not know this RUN step: {step}")
