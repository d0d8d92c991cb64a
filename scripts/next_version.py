"""Next semantic version from the latest vX.Y.Z tag and Conventional Commits since it.

feat → minor, fix/perf/other → patch, `!` or BREAKING CHANGE → major. Prints X.Y.Z.
"""

from __future__ import annotations

import re
import subprocess
import sys

TAG = re.compile(r"v(\d+)\.(\d+)\.(\d+)")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def bump(version: tuple[int, int, int], messages: list[str]) -> tuple[int, int, int]:
    major, minor, patch = version
    if any(re.match(r"^\w+(\([^)]*\))?!:", m) or "BREAKING CHANGE" in m for m in messages):
        return major + 1, 0, 0
    if any(re.match(r"^feat(\([^)]*\))?:", m) for m in messages):
        return major, minor + 1, 0
    return major, minor, patch + 1


def main() -> None:
    tags = [t for t in git("tag", "--list", "v*", "--sort=-v:refname").split() if TAG.fullmatch(t)]
    if not tags:
        print("0.1.0")
        return
    match = TAG.fullmatch(tags[0])
    if match is None:  # filtered above; keeps the type checker informed
        raise SystemExit(f"unexpected tag {tags[0]}")
    current = (int(match[1]), int(match[2]), int(match[3]))
    messages = git("log", "--format=%B%x00", f"{tags[0]}..HEAD").split("\0")
    print(".".join(map(str, bump(current, [m.strip() for m in messages if m.strip()]))))


if __name__ == "__main__":
    sys.exit(main())
