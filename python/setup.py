"""Builds and installs the moedist Python package with pip, offline, with Debian's setuptools:

    pip install --no-build-isolation ./python            # from the repository root; no network, nothing downloaded

The extension modules come from moedist's CMake build (Ninja): this script configures a Release build of the
library and the package in build/pip (or reuses the configured build tree named by MOEDIST_CMAKE_BUILD_DIR), builds
the target moedist_python, installs it into a staging prefix, and puts the extensions and libmoedist.so beside the
Python modules (the extensions' RPATH includes $ORIGIN). setuptools' own files go to python/build (ignored by git),
or to <tree>/setuptools with MOEDIST_CMAKE_BUILD_DIR. Needs cmake, ninja-build, g++, pybind11-dev, python3-dev.
"""

import glob
import os
import pathlib
import re
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent  # the CMake project


def _version():
    text = (ROOT / "CMakeLists.txt").read_text()
    return re.search(r"project\(moedist VERSION ([0-9.]+)", text).group(1)


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def run(self):
        build = pathlib.Path(os.environ.get("MOEDIST_CMAKE_BUILD_DIR") or ROOT / "build" / "pip").resolve()
        if not (build / "CMakeCache.txt").exists():
            configure = [
                "cmake", "-S", str(ROOT), "-B", str(build), "-G", "Ninja",
                "-DCMAKE_BUILD_TYPE=Release", "-DMOEDIST_PYTHON=ON", f"-DPython_EXECUTABLE={sys.executable}",
                "-DMOEDIST_BUILD_TESTS=OFF", "-DMOEDIST_BUILD_TOOLS=OFF", "-DMOEDIST_BUILD_BENCH=OFF",
            ]  # fmt: skip
            if shutil.which("ccache"):
                configure.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
            subprocess.run(configure, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 1)
        subprocess.run(["cmake", "--build", str(build), "-j", jobs, "--target", "moedist", "moedist_python"], check=True)
        staging = pathlib.Path(self.build_temp).resolve() / "cmake-install"
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run(["cmake", "--install", str(build), "--prefix", str(staging)], check=True, stdout=subprocess.DEVNULL)

        package = pathlib.Path(self.build_lib) / "moedist"
        package.mkdir(parents=True, exist_ok=True)
        installed = glob.glob(str(staging / "lib" / "python3*" / "*-packages" / "moedist"))
        if len(installed) != 1:
            raise RuntimeError(f"moedist: cmake --install put no package under {staging} (found {installed})")
        for path in pathlib.Path(installed[0]).glob("*.so"):
            shutil.copy2(path, package / path.name)
        # libmoedist.so.<major> (the name the extensions ask for), beside them: their RPATH includes $ORIGIN.
        libs = [p for p in staging.glob("lib*/**/libmoedist.so.*") if p.name.count(".") == 2]
        if len(libs) != 1:
            raise RuntimeError(f"moedist: expected one libmoedist.so.<major> under {staging}, found {libs}")
        shutil.copy2(libs[0].resolve(), package / libs[0].name)


# setuptools' own files (build/, egg-info): in the reused CMake build tree, else in the ignored python/build.
_reused = os.environ.get("MOEDIST_CMAKE_BUILD_DIR")
SETUPTOOLS_DIR = pathlib.Path(_reused) / "setuptools" if _reused else HERE / "build"
SETUPTOOLS_DIR.mkdir(parents=True, exist_ok=True)

setup(
    name="moedist",
    version=_version(),
    description="CANN's MoE distribute operators (DispatchV3, CombineAddRmsNormV2, ...) on CPUs, over numpy",
    packages=["moedist"],
    package_dir={"moedist": "moedist"},
    ext_modules=[CMakeExtension("moedist._C")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=[],  # numpy (python3-numpy) is needed at run time; pip is not asked to fetch it
    zip_safe=False,
    options={"egg_info": {"egg_base": str(SETUPTOOLS_DIR)}, "build": {"build_base": str(SETUPTOOLS_DIR)}},
)
