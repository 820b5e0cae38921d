"""Compile the benchmark's C programs (gcc -O2) into bench/.build/ when missing or stale.

    python -m bench.build          # prints the paths of the binaries
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_DIR = HERE / ".build"
SOURCES = {"loadgen": HERE / "loadgen.c", "trivial_server": HERE / "trivial_server.c"}
CFLAGS = ["-O2", "-Wall", "-Wextra"]


def binary(name: str, build_dir: Path = BUILD_DIR) -> Path:
    """Path of the compiled ``name``, built first if absent or older than its source."""
    src = SOURCES[name]
    out = build_dir / name
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("gcc not found: the benchmark's load generator is C")
    build_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    proc = subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"compiling {src.name} failed:\n{proc.stderr}")
    tmp.replace(out)  # atomic: a concurrent run never sees half a binary
    return out


def build_all() -> dict[str, Path]:
    return {name: binary(name) for name in SOURCES}


if __name__ == "__main__":
    for name, path in build_all().items():
        print(f"{name}: {path}")
    sys.exit(0)
