#!/usr/bin/env python3
"""Installs llama-cpp-python, the independent implementation weft's GGUF references
and decode benchmark compare against, into the models' venv, built for this CPU.

    python3 scripts/llama_venv.py [--dest DIR]   (default DIR: <repo>/target/models)

llama-cpp-python compiles llama.cpp from source with the host CPU's instruction set
(GGML_NATIVE), so a venv built on one machine can die with "Illegal instruction" on
another while `import llama_cpp` still works. The build therefore leaves a stamp,
DIR/venv/llama_cpp.cpu, holding the pinned version and a digest of the CPU's feature
flags; a venv whose stamp is missing or differs is rebuilt, without pip's wheel cache
(which would hand back the old build).

A CPU may also list AMX (`amx_tile`) that its virtual machine does not let a program
use: llama.cpp, built with it, dies in its first batched product of a quantised
matrix. Where a probe of one AMX instruction fails, llama.cpp is built without AMX
(`-mno-amx-*`), as it would run on such a machine at its best; the stamp says so.
Idempotent; minutes when it builds (CMAKE_BUILD_PARALLEL_LEVEL, default 2).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
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


# Requests the tile state (Linux's ARCH_REQ_XCOMP_PERM for XTILEDATA), configures
# one tile and zeroes it: SIGILL where the machine lists AMX but does not run it.
AMX_PROBE = r"""
#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    unsigned char cfg[64];
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return 2;
    memset(cfg, 0, sizeof cfg);
    cfg[0] = 1;   /* palette 1 */
    cfg[16] = 64; /* tile 0: 64 bytes a row */
    cfg[48] = 16; /* tile 0: 16 rows */
    _tile_loadconfig(cfg);
    _tile_zero(0);
    _tile_release();
    return 0;
}
"""
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def amx_unusable() -> bool:
    """Whether the CPU lists AMX but a program here cannot run it (False where
    it does not list it, or no C compiler can build the probe)."""
    try:
        if "amx_tile" not in Path("/proc/cpuinfo").read_text():
            return False
    except OSError:
        return False
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "amx.c", Path(tmp) / "amx"
        src.write_text(AMX_PROBE)
        if subprocess.run([cc, "-O1", "-mamx-tile", str(src), "-o", str(exe)],
                          capture_output=True).returncode != 0:
            return False
        return subprocess.run([str(exe)], capture_output=True).returncode != 0


def stamp_text(no_amx: bool) -> str:
    return f"{LLAMA_CPP_PYTHON} cpu={cpu_digest()}{' amx=off' if no_amx else ''}\n"


def ensure(dest: Path, log=lambda m: print(m, file=sys.stderr)) -> None:
    """Makes `import llama_cpp` work in dest/venv with a build for this CPU."""
    vdir = dest / "venv"
    py = vdir / "bin" / "python"
    if not py.exists():
        raise SystemExit(f"missing {py}: run `python3 scripts/models.py` first")
    stamp = vdir / "llama_cpp.cpu"

    def imports() -> bool:
        return subprocess.run([str(py), "-c", "import llama_cpp"],
                              capture_output=True).returncode == 0

    # Installed at all (a build for another CPU may not even import).
    installed = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; m.version('llama_cpp_python')"],
        capture_output=True).returncode == 0
    current = stamp.read_text() if stamp.exists() else None
    no_amx = amx_unusable()
    if installed and current == stamp_text(no_amx) and imports():
        return
    why = ("not installed" if not installed else
           "built without a stamp" if current is None else
           f"built as {current.strip()}, not {stamp_text(no_amx).strip()}")
    log(f"installing {LLAMA_CPP_PYTHON} into {vdir} ({why}; builds llama.cpp from source)")
    env = dict(os.environ)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    if no_amx:
        log("  this machine lists AMX but does not run it: building llama.cpp without AMX")
        flags = f'-DCMAKE_C_FLAGS="{NO_AMX}" -DCMAKE_CXX_FLAGS="{NO_AMX}"'
        env["CMAKE_ARGS"] = f"{env.get('CMAKE_ARGS', '')} {flags}".strip()
    cmd = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-cache-dir", LLAMA_CPP_PYTHON]
    if installed:
        # (Else pip keeps what is there, as the pinned version already; the
        # dependencies stay, as the venv's numpy makes the tiny models.)
        cmd.insert(-1, "--force-reinstall")
        cmd.insert(-1, "--no-deps")
    subprocess.run(cmd, check=True, env=env)
    if not imports():
        raise SystemExit(f"{LLAMA_CPP_PYTHON} was built but does not import in {vdir}")
    stamp.write_text(stamp_text(no_amx))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=ROOT / "target" / "models",
                    help="where scripts/models.py put the models (default: <repo>/target/models)")
    ensure(ap.parse_args().dest.resolve())


if __name__ == "__main__":
    main()
