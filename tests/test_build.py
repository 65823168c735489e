"""The llama.cpp build: portable, never AMX, and refused on a CPU it was not built for."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from longdoc.pipeline import cpu

AMX_CPU = "flags\t\t: fpu sse4_2 avx f16c fma avx2 bmi2 avx512f avx512_vnni amx_tile amx_int8\n"
OLD_CPU = "flags\t\t: fpu sse4_2 avx\n"


def test_the_installed_ggml_libraries_hold_no_amx_instruction() -> None:
    """AMX code dies with SIGILL on AMX CPUs (tile permission is asked on the main thread
    only): a build made on any machine must not contain it."""
    libraries = cpu.ggml_libraries(Path(sysconfig.get_paths()["platlib"]))
    assert any(lib.name.startswith("libggml-cpu") for lib in libraries), libraries
    for lib in libraries:
        assert cpu.amx_instructions(lib) == [], lib


def test_the_amx_check_finds_amx_code(tmp_path: Path) -> None:
    """The check above can fail: a library with one tileloadd is caught."""
    source = tmp_path / "amx.c"
    source.write_text('void f(void *p) { __asm__ volatile("tileloadd (%0,%1,1), %%tmm0" '
                      ':: "r"(p), "r"(64L)); }\n')
    lib = tmp_path / "libggml-amx.so"
    subprocess.run([shutil.which("cc") or "gcc", "-shared", "-fPIC", "-o", str(lib),
                    str(source)], check=True)
    found = cpu.amx_instructions(lib)
    assert found and "tileloadd" in found[0]


def test_cmake_args_follow_the_cpu_and_never_enable_amx() -> None:
    args = cpu.cmake_args(cpu.cpu_flags(AMX_CPU))
    assert "-DGGML_NATIVE=OFF" in args
    assert "-DGGML_AVX512=ON" in args and "-DGGML_AVX512_VNNI=ON" in args
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(args)
    old = cpu.cmake_args(cpu.cpu_flags(OLD_CPU))
    assert "-DGGML_AVX=ON" in old and "-DGGML_AVX2=OFF" in old and "-DGGML_FMA=OFF" in old


def test_a_build_for_a_newer_cpu_is_refused_by_name(tmp_path: Path) -> None:
    cpu.record(tmp_path, cpu.cpu_flags(AMX_CPU), [])
    assert cpu.missing_flags(tmp_path, cpu.cpu_flags(AMX_CPU)) == []
    missing = cpu.missing_flags(tmp_path, cpu.cpu_flags(OLD_CPU))
    assert missing == ["f16c", "fma", "avx2", "bmi2", "avx512f", "avx512_vnni"]
    assert cpu.missing_flags(tmp_path / "elsewhere") is None


def test_the_embedded_backend_refuses_a_build_this_cpu_cannot_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from longdoc.pipeline.backends import EmbeddedServer
    from longdoc.pipeline.errors import BackendError
    from longdoc.pipeline.settings import Settings

    cpu.record(tmp_path, cpu.cpu_flags(AMX_CPU), [])
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(cpu, "cpu_flags", lambda cpuinfo=None: {"sse4_2", "avx"})
    with pytest.raises(BackendError,
                       match=r"built for a CPU with f16c, .*rerun bash scripts/setup.sh"):
        EmbeddedServer(Settings(cache_dir=tmp_path)).command()


def test_the_venv_build_is_recorded_and_fits_this_cpu() -> None:
    """scripts/setup.sh recorded this venv's build; this CPU has what it needs."""
    result = subprocess.run([sys.executable, str(Path(cpu.__file__)), "check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
