"""The deployment package never imports torch (docs/ARCHITECTURE.md; codt_deploy/__init__.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

SCRIPT = """
import importlib, pkgutil, sys
import codt_deploy
names = sorted(m.name for m in pkgutil.walk_packages(codt_deploy.__path__, "codt_deploy."))
for name in names:
    if name != "codt_deploy.__main__":
        importlib.import_module(name)
print(len(names), ",".join(sorted(m for m in ("torch", "onnx", "sklearn") if m in sys.modules)))
"""


def test_importing_every_codt_deploy_module_leaves_torch_out():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    count, heavy = result.stdout.split()[0], result.stdout.strip().partition(" ")[2]
    assert int(count) >= 15  # every module was imported, readers included
    assert "torch" not in heavy.split(","), heavy
