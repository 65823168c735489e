"""Packaging: build the wheel, check what it ships, install it in a fresh venv and run it.

The source folders (pipeline/, agents/, ...) are mapped onto ``longdoc.*`` by setuptools'
``package-dir``; these tests make sure the built wheel really has that layout and works on
its own, without the editable install of the development venv. No network is used: the
wheel is built with the venv's own setuptools (``--no-build-isolation``) and installed with
``--no-deps --no-index``; the fresh venv sees the dependencies through a ``.pth`` line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS_CFG = PYPROJECT["tool"]["setuptools"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS_CFG["package-dir"]
# Source folders that must not appear as top-level packages of the wheel.
SOURCE_FOLDERS = sorted(({*PACKAGE_DIR.values()} - {"longdoc"}) | {"tests", "samples", "scripts"})
NAME = PYPROJECT["project"]["name"]
VERSION = PYPROJECT["project"]["version"]
DIST_INFO = f"{NAME}-{VERSION}.dist-info"
TIMEOUT = 180

# Not part of a build: the dev venv, VCS data, caches and earlier build output (a stale
# build/lib would put deleted modules back into the wheel).
_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
    ".pytest_cache", ".ruff_cache", ".mypy_cache", ".longdoc-cache",
)


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", TIMEOUT)
    return subprocess.run(  # type: ignore[call-overload]
        cmd, capture_output=True, text=True, encoding="utf-8", check=False, **kwargs
    )


def _explain(proc: subprocess.CompletedProcess[str]) -> str:
    return (f"exit {proc.returncode}: {' '.join(map(str, proc.args))}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")


def _pip_env() -> dict[str, str]:
    """The environment for pip: never ask an index, not even for pip's own version."""
    return {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}}
    env.update(PYTHONNOUSERSITE="1", PYTHONIOENCODING="utf-8", PYTHONUTF8="1",
               PYTHONDONTWRITEBYTECODE="1", NO_COLOR="1", COLUMNS="120")
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a clean copy of the source tree (the repo itself is not touched)."""
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=_IGNORE, symlinks=True)
    out = root / "wheelhouse"
    proc = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--check-build-dependencies", "--no-index", "-w", str(out), str(src)],
        env=_pip_env(), cwd=root,
    )
    if "conflict with the backend dependencies" in proc.stderr:
        pytest.fail(
            "the build tools installed next to pytest do not satisfy pyproject.toml's "
            f"[build-system] requires {PYPROJECT['build-system']['requires']}; install them, "
            "e.g. `.venv/bin/pip install 'setuptools>=77' wheel`.\n" + _explain(proc)
        )
    assert proc.returncode == 0, _explain(proc)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    assert wheels[0].name == f"{NAME}-{VERSION}-py3-none-any.whl"
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_wheel_has_only_the_longdoc_package(wheel_files: list[str]) -> None:
    top = {name.split("/", 1)[0] for name in wheel_files}
    assert top == {"longdoc", DIST_INFO}, sorted(top)
    for folder in SOURCE_FOLDERS:
        assert not any(n.startswith(f"{folder}/") for n in wheel_files), folder
    for required in ("longdoc/__init__.py", "longdoc/py.typed", "longdoc/pipeline/cli.py",
                     "longdoc/agents/direct.py", "longdoc/prompts/direct.py",
                     "longdoc/retrieval/__init__.py", "longdoc/app/__init__.py"):
        assert required in wheel_files, required
    # Test tools (the simulated server) live in tests/, not in the runtime package.
    assert not [n for n in wheel_files if "simserver" in n]


def test_wheel_ships_every_source_module(wheel_files: list[str]) -> None:
    """Each .py under a mapped folder is in the wheel: no subpackage is forgotten.

    ``packages`` is an explicit list, so a new subfolder (say pipeline/strategies/) would
    silently be left out of the wheel while the editable install still finds it.
    """
    missing = []
    for package, folder in PACKAGE_DIR.items():
        base = REPO / folder
        for py in sorted(base.rglob("*.py")):
            rel = py.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            target = "/".join([*package.split("."), *rel.parts])
            if target not in wheel_files:
                missing.append(f"{folder}/{rel.as_posix()} -> {target}")
    assert not missing, "not in the wheel:\n" + "\n".join(missing)


def test_wheel_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        entry_points = zf.read(f"{DIST_INFO}/entry_points.txt").decode()
        metadata = zf.read(f"{DIST_INFO}/METADATA").decode()
    assert "longdoc = longdoc.pipeline.cli:main" in entry_points
    assert f"Name: {NAME}\n" in metadata
    assert f"Version: {VERSION}\n" in metadata


# --------------------------------------------------------------------------- fresh venv


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with only the wheel installed; dependencies come from the dev venv."""
    env_dir = tmp_path_factory.mktemp("fresh") / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    assert python.exists(), python
    proc = _run([sys.executable, "-m", "pip", "--python", str(python), "install",
                 "--no-deps", "--no-index", str(wheel)], env=_pip_env())
    assert proc.returncode == 0, _explain(proc)
    proc = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                env=_clean_env())
    assert proc.returncode == 0, _explain(proc)
    site_packages = Path(proc.stdout.strip())
    assert (site_packages / "longdoc" / "__init__.py").is_file()
    # Plain path lines only append to sys.path, after the venv's own site-packages; the
    # .pth files in those folders (the editable finder's among them) are not processed.
    dep_dirs = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site_packages / "zz_dev_venv_deps.pth").write_text(
        "".join(f"{d}\n" for d in dep_dirs), encoding="utf-8"
    )
    return env_dir


def _bin(env_dir: Path, name: str) -> str:
    if os.name == "nt":
        return str(env_dir / "Scripts" / f"{name}.exe")
    return str(env_dir / "bin" / name)


_PROBE = """
import importlib.metadata as md, json, sys
import longdoc, longdoc.pipeline.cli, longdoc.agents.direct, longdoc.prompts.direct
import longdoc.retrieval, longdoc.app
tops = {}
for name in ("pipeline", "agents", "retrieval", "prompts", "app"):
    try:
        __import__(name)
    except ModuleNotFoundError:
        tops[name] = None
    else:
        tops[name] = sys.modules[name].__file__
finders = [getattr(f, "__name__", type(f).__name__) for f in sys.meta_path]
print(json.dumps({
    "files": [longdoc.__file__, longdoc.pipeline.cli.__file__, longdoc.agents.direct.__file__,
              longdoc.prompts.direct.__file__],
    "dist": str(md.distribution("longdoc").locate_file("")),
    "version": longdoc.__version__,
    "tops": tops,
    "finders": finders,
    "editable_loaded": [m for m in sys.modules if "editable" in m],
}))
"""


def test_installed_wheel_imports_from_the_fresh_venv(fresh_venv: Path, tmp_path: Path) -> None:
    proc = _run([_bin(fresh_venv, "python"), "-c", _PROBE], env=_clean_env(), cwd=tmp_path)
    assert proc.returncode == 0, _explain(proc)
    info = json.loads(proc.stdout)
    root = fresh_venv.resolve()
    for file in info["files"]:
        assert Path(file).resolve().is_relative_to(root), f"{file} is not from the fresh venv"
        assert not Path(file).resolve().is_relative_to(REPO), file
    assert Path(info["dist"]).resolve().is_relative_to(root), info["dist"]
    assert info["version"] == VERSION
    assert info["tops"] == dict.fromkeys(info["tops"]), f"top-level modules leak: {info['tops']}"
    assert not any("editable" in f.lower() for f in info["finders"]), info["finders"]
    assert not info["editable_loaded"], info["editable_loaded"]


def test_console_script_help(fresh_venv: Path, tmp_path: Path) -> None:
    proc = _run([_bin(fresh_venv, "longdoc"), "--help"], env=_clean_env(), cwd=tmp_path)
    assert proc.returncode == 0, _explain(proc)
    for command in ("ask", "extract", "config"):
        assert command in proc.stdout, command


def test_python_dash_m_longdoc(fresh_venv: Path, tmp_path: Path) -> None:
    proc = _run([_bin(fresh_venv, "python"), "-m", "longdoc", "--help"],
                env=_clean_env(), cwd=tmp_path)
    assert proc.returncode == 0, _explain(proc)
    assert "ask" in proc.stdout


def test_console_script_extract(fresh_venv: Path, tmp_path: Path) -> None:
    text = "First line.\nZweite Zeile: Grüße — “quoted”.\n\n\tIndented, and no newline at the end"
    doc = tmp_path / "note.txt"
    doc.write_bytes(text.encode("utf-8"))
    proc = subprocess.run(
        [_bin(fresh_venv, "longdoc"), "extract", str(doc)],
        capture_output=True, env=_clean_env(), cwd=tmp_path, timeout=TIMEOUT, check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert proc.stdout == text.encode("utf-8")


def test_console_script_config(fresh_venv: Path, tmp_path: Path) -> None:
    proc = _run([_bin(fresh_venv, "longdoc"), "config"], env=_clean_env(), cwd=tmp_path)
    assert proc.returncode == 0, _explain(proc)
    settings = json.loads(proc.stdout)
    assert settings["backend"] in {"embedded", "vllm", "openai"}
