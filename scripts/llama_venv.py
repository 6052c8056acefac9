#!/usr/bin/env python3
"""Installs llama-cpp-python, the independent implementation weft's GGUF references
and decode benchmark compare against, into the models' venv, built for this CPU.

    python3 scripts/llama_venv.py [--dest DIR]   (default DIR: <repo>/target/models)

llama-cpp-python compiles llama.cpp from source with the host CPU's instruction set
(GGML_NATIVE), so a venv built on one machine can die with "Illegal instruction" on
another (one with AMX-INT8 against one without, say) while `import llama_cpp` still
works. The build therefore leaves a stamp, DIR/venv/llama_cpp.cpu, holding the pinned
version and a digest of the CPU's feature flags; a venv whose stamp is missing or
differs is rebuilt, without pip's wheel cache (which would hand back the old build).
Idempotent; minutes when it builds (CMAKE_BUILD_PARALLEL_LEVEL, default 2).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"


def cpu_digest() -> str:
    """A digest of the CPU feature flags the compiler targets with -march=native
    (the first `flags` line of /proc/cpuinfo, order-free); "unknown" elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = sorted(set(line.split(":", 1)[1].split()))
                return hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16]
    except OSError:
        pass
    return "unknown"


def stamp_text() -> str:
    return f"{LLAMA_CPP_PYTHON} cpu={cpu_digest()}\n"


def ensure(dest: Path, log=lambda m: print(m, file=sys.stderr)) -> None:
    """Makes `import llama_cpp` work in dest/venv with a build for this CPU."""
    vdir = dest / "venv"
    py = vdir / "bin" / "python"
    if not py.exists():
        raise SystemExit(f"missing {py}: run `python3 scripts/models.py` first")
    stamp = vdir / "llama_cpp.cpu"
    imports = subprocess.run([str(py), "-c", "import llama_cpp"], capture_output=True).returncode == 0
    current = stamp.read_text() if stamp.exists() else None
    if imports and current == stamp_text():
        return
    why = ("not installed" if not imports else
           "built without a stamp" if current is None else
           f"built for another CPU or version ({current.strip()})")
    log(f"installing {LLAMA_CPP_PYTHON} into {vdir} ({why}; builds llama.cpp from source)")
    env = dict(os.environ)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    cmd = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-cache-dir", LLAMA_CPP_PYTHON]
    if imports:
        cmd.insert(-1, "--force-reinstall")
        cmd.insert(-1, "--no-deps")
    subprocess.run(cmd, check=True, env=env)
    stamp.write_text(stamp_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=ROOT / "target" / "models",
                    help="where scripts/models.py put the models (default: <repo>/target/models)")
    ensure(ap.parse_args().dest.resolve())


if __name__ == "__main__":
    main()
