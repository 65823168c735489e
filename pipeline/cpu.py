"""x86-64 instruction sets and the portable llama.cpp build (stdlib only).

`scripts/setup.sh` runs this file as a script before longdoc is installed, so it imports
nothing from the package.

The embedded backend's llama.cpp is compiled with ``GGML_NATIVE=OFF`` and an explicit list of
instruction sets taken from what the build machine's CPU reports (``/proc/cpuinfo``), never
AMX: llama.cpp asks Linux for AMX tile permission on the main thread only while its worker
threads execute the tile instructions, so an AMX build dies with SIGILL on the first
completion. The sets a build uses are recorded next to the venv (``BUILD_RECORD``);
:func:`missing_flags` tells, before a server starts, whether this CPU lacks any of them (a
venv copied to an older machine), and `setup.sh` rebuilds in that case.

Usage as a script::

    python pipeline/cpu.py cmake-args   # CMAKE_ARGS for this CPU
    VENV/bin/python pipeline/cpu.py amx-free    # exit 1 if a libggml*.so holds AMX code
    VENV/bin/python pipeline/cpu.py record      # write the record after a build
    VENV/bin/python pipeline/cpu.py check       # exit 1 unless the recorded build fits this CPU
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

# GGML option -> the /proc/cpuinfo flag that makes it safe. Order follows ggml's CMake file.
GGML_OPTIONS: dict[str, str] = {
    "GGML_SSE42": "sse4_2",
    "GGML_AVX": "avx",
    "GGML_F16C": "f16c",
    "GGML_FMA": "fma",
    "GGML_AVX2": "avx2",
    "GGML_BMI2": "bmi2",
    "GGML_AVX_VNNI": "avx_vnni",
    "GGML_AVX512": "avx512f",
    "GGML_AVX512_VBMI": "avx512vbmi",
    "GGML_AVX512_VNNI": "avx512_vnni",
    "GGML_AVX512_BF16": "avx512_bf16",
}
# Always off, whatever the CPU reports (see the module docstring).
DISABLED = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
# AMX mnemonics as objdump prints them (tileloadd, tileloaddt1, tdpbssd, tdpbf16ps, ...).
AMX_INSTRUCTION = re.compile(r"\t(tileloadd|tilestored|tdpb[a-z0-9]*|tdpfp16ps|ldtilecfg)\b")
BUILD_RECORD = ".longdoc-llama-build.json"


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The instruction-set flags of the first CPU in ``/proc/cpuinfo`` (empty if unreadable)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cmake_args(flags: set[str]) -> list[str]:
    """CMake options for a build that runs on a CPU with ``flags`` (and never uses AMX)."""
    args = ["-DGGML_NATIVE=OFF"]
    for option, flag in GGML_OPTIONS.items():
        args.append(f"-D{option}={'ON' if flag in flags else 'OFF'}")
    args += [f"-D{option}=OFF" for option in DISABLED]
    return args


def required_flags(flags: set[str]) -> list[str]:
    """The CPU flags a build for ``flags`` relies on."""
    return [flag for flag in GGML_OPTIONS.values() if flag in flags]


def record(venv: Path, flags: set[str], libraries: list[Path]) -> None:
    """Write what the build in ``venv`` needs of a CPU, with its libraries' hashes."""
    data = {"requires": required_flags(flags), "libraries": _hashes(libraries)}
    (venv / BUILD_RECORD).write_text(json.dumps(data, indent=1) + "\n")


def missing_flags(venv: Path, flags: set[str] | None = None) -> list[str] | None:
    """CPU flags the build in ``venv`` needs and this CPU lacks; None when nothing is recorded."""
    try:
        needed = json.loads((venv / BUILD_RECORD).read_text())["requires"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    have = cpu_flags() if flags is None else flags
    return [flag for flag in needed if flag not in have]


def recorded_libraries_match(venv: Path, libraries: list[Path]) -> bool:
    """Whether ``libraries`` are the ones the record was written for (none rebuilt since)."""
    try:
        recorded = json.loads((venv / BUILD_RECORD).read_text())["libraries"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(libraries) and recorded == _hashes(libraries)


def _hashes(libraries: list[Path]) -> dict[str, str]:
    return {lib.name: hashlib.sha256(lib.read_bytes()).hexdigest() for lib in libraries}


def ggml_libraries(site_packages: Path) -> list[Path]:
    """Every ``libggml*.so`` that llama-cpp-python installed under ``site_packages``."""
    found = sorted({p.resolve() for p in (site_packages / "llama_cpp").rglob("libggml*.so*")
                    if p.is_file()})
    unique: dict[str, Path] = {}  # wheels hold lib.so, lib.so.0, ... as copies, not links
    for path in found:
        unique.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    return sorted(unique.values())


def amx_instructions(library: Path, limit: int = 3) -> list[str]:
    """Up to ``limit`` AMX instructions in ``library``'s code (objdump -d)."""
    objdump = shutil.which("objdump")
    if objdump is None:
        raise RuntimeError("objdump not found (Debian package binutils)")
    out = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", str(library)],
        capture_output=True, text=True, check=True,
    ).stdout
    found = []
    for line in out.splitlines():
        if AMX_INSTRUCTION.search(line):
            found.append(line.strip())
            if len(found) >= limit:
                break
    return found


def main(argv: list[str]) -> int:
    """Run one command of the module docstring; the venv is the running interpreter's."""
    venv = Path(sys.prefix)
    libraries = ggml_libraries(Path(sysconfig.get_paths()["platlib"]))
    command = argv[0] if argv else ""
    if command == "cmake-args":
        print(" ".join(cmake_args(cpu_flags())))
        return 0
    if command == "libraries":
        print("\n".join(map(str, libraries)))
        return 0 if libraries else 1
    if command == "amx-free":
        if not libraries:
            print("no libggml*.so found: is llama-cpp-python installed?", file=sys.stderr)
            return 1
        bad = [(lib, hits) for lib in libraries if (hits := amx_instructions(lib))]
        for lib, hits in bad:
            print(f"{lib}: AMX instructions, e.g. {hits[0]}", file=sys.stderr)
        return 1 if bad else 0
    if command == "record":
        record(venv, cpu_flags(), libraries)
        return 0
    if command == "check":
        missing = missing_flags(venv)
        if missing is None or not recorded_libraries_match(venv, libraries):
            print("llama.cpp was not built by scripts/setup.sh here (or was rebuilt since)",
                  file=sys.stderr)
            return 1
        if missing:
            print(f"the llama.cpp build needs {', '.join(missing)}, which this CPU lacks",
                  file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
