"""Generate the Python protobuf/gRPC package (libs/ig-proto) from proto/, or check it is current.

    python tools/protogen/generate.py          # regenerate
    python tools/protogen/generate.py --check  # exit 1 when the committed code differs from the .proto files
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "libs" / "ig-proto" / "src"
PACKAGE = "ig"


def generate(out_dir: Path) -> None:
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc", f"-I{PROTO_DIR}", f"-I{well_known}",
        f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for directory in [out_dir / PACKAGE, *[d for d in (out_dir / PACKAGE).rglob("*") if d.is_dir()]]:
        init = directory / "__init__.py"
        if not init.exists():
            init.write_text("")
    (out_dir / PACKAGE / "py.typed").write_text("")


def differences(left: Path, right: Path) -> list[str]:
    found: list[str] = []
    compare = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found += [f"only in committed: {name}" for name in compare.left_only]
    found += [f"missing from committed: {name}" for name in compare.right_only]
    found += [f"differs: {name}" for name in compare.diff_files]
    for sub in compare.common_dirs:
        found += [f"{sub}/{item}" for item in differences(left / sub, right / sub)]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when generated code is out of date")
    options = parser.parse_args()
    if not options.check:
        shutil.rmtree(OUT_DIR / PACKAGE, ignore_errors=True)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        generate(OUT_DIR)
        print(f"generated {OUT_DIR / PACKAGE}")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        drift = differences(OUT_DIR / PACKAGE, Path(scratch) / PACKAGE)
    if drift:
        print("generated code is out of date with proto/ (run `make proto`):", *drift, sep="\n  ", file=sys.stderr)
        return 1
    print("generated code matches proto/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
