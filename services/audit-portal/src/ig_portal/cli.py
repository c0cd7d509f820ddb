"""``ig-portal-unwrap``: turn watermarked downloads back into the original artifacts, offline.

    ig-portal-unwrap --out DIR FILE...

Each FILE is written to DIR under its original name (a zip download ``x.zip`` becomes ``x``); the bytes are then
exactly those the signed manifest hashes, so ``ig-evidence verify`` and ``sha256sum`` work on them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ig_portal.domain.watermark import MARK_FILE, unwrap


def original_name(path: Path, data: bytes) -> str:
    if path.suffix == ".zip" and data.startswith(b"PK") and MARK_FILE.encode() in data:
        return path.name.removesuffix(".zip")
    return path.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ig-portal-unwrap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the original files")
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.files:
        data = path.read_bytes()
        name = original_name(path, data)
        (args.out / name).write_bytes(unwrap(name, data))
        print(f"{path} -> {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
