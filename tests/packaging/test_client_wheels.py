"""A portal team installs the client outside this repository: the client's and the
published language's wheels, built with `uv build`, go into a clean virtualenv with
their declared dependencies from the package index and nothing else, and the client's
own tests pass there. The platform (asyncpg, FastAPI, uvicorn ...) must not come along."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The client traces through opentelemetry-api alone: the SDK stays the application's choice.
PLATFORM_ONLY = (
    "payments_platform",
    "asyncpg",
    "fastapi",
    "uvicorn",
    "prometheus_client",
    "typer",
    "opentelemetry.sdk",
)


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_client_installs_from_its_wheels_and_passes_its_tests_in_a_clean_virtualenv(
    tmp_path: Path,
) -> None:
    wheels = tmp_path / "wheels"
    for package in ("payments-contracts", "payments-portal-client"):
        _run(*_uv(), "build", "--wheel", "--package", package, "--out-dir", wheels, cwd=ROOT)
    built = sorted(wheels.glob("*.whl"))
    assert [w.name.split("-")[0] for w in built] == ["payments_contracts", "payments_portal_client"]

    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run(*_uv(), "venv", "--python", sys.executable, venv, cwd=tmp_path)
    _run(*_uv(), "pip", "install", "--python", python, *built, "pytest", "pytest-asyncio", cwd=tmp_path)

    # Outside the repository: the client's tests and its pytest settings, nothing else.
    project = tmp_path / "portal-team"
    shutil.copytree(ROOT / "clients" / "python" / "tests", project / "tests")
    shutil.copy(ROOT / "clients" / "python" / "pyproject.toml", project / "pyproject.toml")

    absent = _run(
        python,
        "-c",
        "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))",
        *PLATFORM_ONLY,
        cwd=project,
    )
    assert absent.stdout.strip() == "", f"came along with the client: {absent.stdout}"

    tested = _run(python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests", cwd=project)
    assert " passed" in tested.stdout and "failed" not in tested.stdout, tested.stdout
