"""Generate the Python modules of protocol/core.proto (committed beside it):

    .venv/bin/python -m protocol.generate

tests/protocol/test_wire.py regenerates them into a temporary directory and compares, so the .proto and
the modules cannot drift apart."""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent


def generate(out: Path) -> None:
    """Write core_pb2.py, core_pb2.pyi and core_pb2_grpc.py for protocol/core.proto under out/protocol."""
    (out / "protocol").mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{ROOT}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        str(ROOT / "protocol" / "core.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
