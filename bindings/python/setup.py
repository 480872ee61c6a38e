"""Build hook: puts the bulkhead shared library inside the package and tags the wheel.

The library is a Rust cdylib with a C ABI, loaded with ctypes (bulkhead/_ffi.py): the wheel
holds no CPython extension, so it is tagged ``py3-none-<platform>``. On glibc Linux the
platform is ``manylinux_2_<N>_<arch>``, where 2.N is the newest glibc symbol version the
built library needs (``auditwheel show`` agrees; ``make test`` checks it).

Where the library comes from, in order:

1. ``BULKHEAD_PREBUILT_LIB``: a libbulkhead.so already built (``make python-dist`` packages
   ``target/release/libbulkhead.so`` this way instead of building twice);
2. the crate in this sdist (``rust/Cargo.toml``), built with ``cargo build --release``;
3. the repository's crate (``../../Cargo.toml``), for ``pip install ./bindings/python``.

``CARGO`` and ``CARGO_TARGET_DIR`` are honoured. The sdist gets the crate's sources in
``rust/`` from ``scripts/package-crate.sh``.
"""

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
SDIST_CRATE = os.path.join(HERE, "rust")

if sys.platform == "darwin":
    LIB_FILE = "libbulkhead.dylib"
elif sys.platform == "win32":
    LIB_FILE = "bulkhead.dll"
else:
    LIB_FILE = "libbulkhead.so"


def _crate_manifest() -> str:
    for manifest in (os.path.join(SDIST_CRATE, "Cargo.toml"), os.path.join(REPO, "Cargo.toml")):
        if os.path.isfile(manifest):
            return manifest
    raise SystemExit("bulkhead: no crate to build (neither rust/Cargo.toml nor ../../Cargo.toml)")


def _build_library() -> str:
    prebuilt = os.environ.get("BULKHEAD_PREBUILT_LIB")
    if prebuilt:
        if not os.path.isfile(prebuilt):
            raise SystemExit(f"bulkhead: BULKHEAD_PREBUILT_LIB={prebuilt} does not exist")
        return prebuilt
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        raise SystemExit(
            "bulkhead: building the native library needs Rust's `cargo` (1.80 or newer), "
            "which is not on PATH. Install Rust (https://rustup.rs), or install a prebuilt "
            "wheel of bulkhead-mixpanel."
        )
    manifest = _crate_manifest()
    target_dir = os.environ.get("CARGO_TARGET_DIR") or os.path.join(
        tempfile.gettempdir(), "bulkhead-cargo-target"
    )
    cmd = [cargo, "build", "--release", "--lib", "--manifest-path", manifest,
           "--target-dir", target_dir]
    if manifest.startswith(SDIST_CRATE):
        cmd.append("--locked")
    else:
        cmd += ["-p", "bulkhead"]
    print("bulkhead: " + " ".join(cmd), flush=True)
    subprocess.check_call(cmd)
    return os.path.join(target_dir, "release", LIB_FILE)


def _glibc_requirement(path: str):
    """(2, N): the newest GLIBC_2.N symbol version the library needs, or None."""
    with open(path, "rb") as f:
        data = f.read()
    versions = [int(m) for m in re.findall(rb"GLIBC_2\.([0-9]+)(?![0-9.])", data)]
    return (2, max(versions)) if versions else None


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if self.dry_run:
            return
        dest = os.path.join(self.build_lib, "bulkhead", LIB_FILE)
        self.copy_file(_build_library(), dest, preserve_mode=True)
        self.distribution.bulkhead_library = dest  # type: ignore[attr-defined]


class BinaryDistribution(Distribution):
    """Platform-specific (platlib, not purelib), though it holds no CPython extension."""

    def has_ext_modules(self) -> bool:
        return True


class BdistWheel(bdist_wheel):
    def get_tag(self):
        _, _, plat = super().get_tag()
        lib = getattr(self.distribution, "bulkhead_library", None)
        machine = platform.machine()
        if plat.startswith("linux_") and lib and machine in ("x86_64", "aarch64"):
            glibc = _glibc_requirement(lib)
            if glibc is not None:
                plat = f"manylinux_{glibc[0]}_{glibc[1]}_{machine}"
        return "py3", "none", plat


class Sdist(sdist):
    def run(self) -> None:
        staged = False
        if not os.path.isfile(os.path.join(SDIST_CRATE, "Cargo.toml")):
            script = os.path.join(REPO, "scripts", "package-crate.sh")
            subprocess.check_call([script, SDIST_CRATE])
            staged = True
        try:
            super().run()
        finally:
            # A checkout builds from ../../ again, never from a stale copy.
            if staged:
                shutil.rmtree(SDIST_CRATE, ignore_errors=True)


setup(distclass=BinaryDistribution, cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel, "sdist": Sdist})
