"""`cmake --install` into a temporary prefix puts the package in Debian's layout, and PYTHONPATH=<prefix>/lib/python3/
dist-packages is all it takes to use it (the extension finds the installed libmoedist.so through its RPATH)."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def clean_env(pythonpath):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = pythonpath
    return env


def test_cmake_install_layout(tmp_path):
    build = os.environ.get("MOEDIST_BUILD_DIR")
    if not build:
        pytest.skip("MOEDIST_BUILD_DIR (set by CTest) names the build tree to install")
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", build, "--prefix", str(prefix)], check=True, capture_output=True)
    site = prefix / "lib" / "python3" / "dist-packages"
    package = site / "moedist"
    assert (package / "__init__.py").is_file()
    assert list(package.glob("_C.*.so")), sorted(os.listdir(package))
    runpath = subprocess.run(["readelf", "-d", str(next(package.glob("_C.*.so")))], capture_output=True, text=True)
    assert "$ORIGIN" in runpath.stdout and build not in runpath.stdout  # relocatable, no build-tree path
    subprocess.run([sys.executable, os.path.join(HERE, "_installed_check.py"), str(prefix)], check=True,
                   cwd=tmp_path, env=clean_env(str(site)))  # fmt: skip
