"""The tools users import our exports with, run where they are installed.

label-studio-sdk, Datumaro and Ultralytics pin other OpenCV/NumPy/Pillow versions than the project
(``pip install --dry-run`` shows it), so they are not in the ``dev`` extra: they live in a virtual
environment of their own (``.ci/run`` makes one; see README "Exports, proven by their importers")
named by ``MASKCLIP_IMPORTERS_PYTHON``. A check runs as a script in the first Python that imports
the tool: this one, else that one; without either the test is skipped, saying what to install.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = "MASKCLIP_IMPORTERS_PYTHON"
INSTALL = {
    "label_studio_sdk": "label-studio-sdk",
    "datumaro": "datumaro",
    "ultralytics": "ultralytics",
}


@functools.cache
def _imports(python: str, module: str) -> bool:
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True, env=_env()).returncode == 0


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), OMP_NUM_THREADS="1")
    env.setdefault("YOLO_CONFIG_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "maskclip-ultralytics"))
    return env


def python_with(module: str) -> str:
    """A Python that imports ``module``; skip the test when there is none."""
    if importlib.util.find_spec(module) is not None:
        return sys.executable
    other = os.environ.get(ENV)
    if other and _imports(other, module):
        return other
    pytest.skip(f"{module} is not installed here (pip install {INSTALL[module]}) nor in ${ENV}"
                f"{f' ({other})' if other else ''}: see .ci/run")


def run_check(module: str, script: str, *args: str) -> dict:
    """Run ``script`` (it prints one JSON document last) with the Python that has ``module``."""
    proc = subprocess.run([python_with(module), "-c", script, *args], capture_output=True, text=True, env=_env(),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
