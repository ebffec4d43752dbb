"""`pip install --no-build-isolation ./python` works offline with Debian's pip and setuptools (--no-index: pip may
not download anything). MOEDIST_CMAKE_BUILD_DIR makes setup.py reuse this build tree instead of configuring its own."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)


def test_pip_install_offline(tmp_path):
    build = os.environ.get("MOEDIST_BUILD_DIR")
    if not build:
        pytest.skip("MOEDIST_BUILD_DIR (set by CTest) names the build tree setup.py reuses")
    pytest.importorskip("pip")
    target = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    env["MOEDIST_CMAKE_BUILD_DIR"] = build
    env["PIP_NO_INDEX"] = "1"  # offline: any download attempt fails the test
    command = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
               "--target", str(target), PYTHON_DIR]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "moedist" / "__init__.py").is_file()
    env["PYTHONPATH"] = str(target)
    subprocess.run([sys.executable, os.path.join(HERE, "_installed_check.py"), str(target)], check=True, cwd=tmp_path,
                   env=env)  # fmt: skip
