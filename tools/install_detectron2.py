#!/usr/bin/env python
"""Make sure ``detectron2`` is importable in the running interpreter.

Detectron2 is not published on the package registry under its own name. The
``sal-detectron2`` wheel is upstream detectron2 (commit a59f0563) tagged for
CPython 3.10 only; its pure-Python sources work on newer Pythons, and its
compiled ``_C`` (never loaded on 3.11) is only needed for deformable conv,
rotated boxes and the fast COCO evaluator, none of which this project uses.

Order of preference:
1. an already-installed detectron2 (e.g. an official source build) is kept;
2. otherwise the ``sal-detectron2`` wheel is unpacked into site-packages;
3. otherwise exit with a message that says what to do.
"""

import importlib
import importlib.metadata
import importlib.util
import subprocess
import sys
import sysconfig

WHEEL = "sal-detectron2==0.7.2"


def detectron2_version():
    """Return the version of the detectron2 on sys.path, or None if there is none.

    Only the package is located (not imported): importing needs its runtime
    dependencies, which `pip install -e .` brings in a separate step.
    """
    importlib.invalidate_caches()
    if importlib.util.find_spec("detectron2") is None:
        return None
    for dist in ("detectron2", "sal-detectron2"):
        try:
            return f"{importlib.metadata.version(dist)} ({dist})"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown version"


def install_wheel() -> int:
    purelib = sysconfig.get_paths()["purelib"]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.10",
        "--implementation",
        "cp",
        "--target",
        purelib,
        "--upgrade",
        WHEEL,
    ]
    print("[install_detectron2] " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def main() -> int:
    version = detectron2_version()
    if version is not None:
        print(f"[install_detectron2] keeping installed detectron2 {version}")
        return 0
    rc = install_wheel()
    version = detectron2_version()
    if rc != 0 or version is None:
        sys.stderr.write(
            "[install_detectron2] ERROR: detectron2 could not be installed.\n"
            f"  Tried: pip install --target <site-packages> {WHEEL} (exit code {rc}).\n"
            "  Install detectron2 yourself (https://detectron2.readthedocs.io, build from\n"
            "  source) into this environment and re-run; an existing install is kept.\n"
        )
        return 1
    print(f"[install_detectron2] installed detectron2 {version} from {WHEEL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
