"""Writing outputs atomically and reading converted slice images.

Why atomic: a conversion can be interrupted or fail on subject 63 of 70; readers
(training runs, a second conversion) must then see either the previous complete
output or nothing, never a half-written JSON. Single files go to a temporary
name in the same folder and are renamed over the target (``os.replace`` is
atomic on POSIX and Windows); whole output folders are staged beside the target
and swapped in (see `replace_dir`).

Slice images are stored as float32 ``.npy`` (see datasets/README.md): lossless
for every integer MRI type up to 16 bits and for float32 volumes, so the model's
per-image z-scoring sees exactly the scanner's intensities.
"""
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from .errors import PWMLDataError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "read_json", "save_slice", "read_slice", "replace_dir",
           "staging_dir_for"]

PathLike = Union[str, os.PathLike]


def atomic_write(path: PathLike, write: Callable[[str], None], binary_handle: bool = False) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    The temporary name keeps ``path``'s endings (``.nii.gz``) for writers that
    choose the format from the name. ``binary_handle``: pass an open file
    instead of a name (for writers such as np.save that would add a suffix).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    endings = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{endings}", dir=path.parent)
    try:
        if binary_handle:
            with os.fdopen(fd, "wb") as f:
                write(f)
        else:
            os.close(fd)
            write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    atomic_write(path, lambda f: f.write(data), binary_handle=True)
    return Path(path)


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and a rename."""
    atomic_write_bytes(path, json.dumps(obj, separators=(",", ":")).encode())


def read_json(path: PathLike) -> Any:
    """Load a JSON file; unreadable or malformed files raise PWMLDataError."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise PWMLDataError(path, f"cannot read JSON ({e})") from e


def save_slice(path: PathLike, image: np.ndarray) -> None:
    """Save a 2-D slice as float32 .npy. Callers write into a staging folder."""
    np.save(path, np.ascontiguousarray(image, dtype=np.float32), allow_pickle=False)


def read_slice(path: PathLike) -> np.ndarray:
    """A grey slice as float32 (H, W): ``.npy`` from the converter, or any image PIL reads.

    PIL images are read without rescaling (8- or 16-bit values as stored); colour
    images must have identical channels, as a T1w slice saved as RGB does.
    """
    path = str(path)
    try:
        if path.endswith(".npy"):
            image = np.load(path, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                image = np.asarray(im)
    except Exception as e:  # numpy / PIL raise many types for truncated files
        raise PWMLDataError(path, f"cannot read slice image ({type(e).__name__}: {e})") from e
    if image.ndim == 3:
        if not all(np.array_equal(image[..., 0], image[..., c]) for c in range(1, min(3, image.shape[2]))):
            raise PWMLDataError(path, f"colour image with different channels {image.shape}; "
                                      "expected a grey T1w slice")
        image = image[..., 0]
    if image.ndim != 2:
        raise PWMLDataError(path, f"expected a 2-D slice, got shape {image.shape}")
    return image.astype(np.float32, copy=False)


def staging_dir_for(out_dir: PathLike) -> Path:
    """A fresh, empty folder beside ``out_dir`` on the same file system (for `replace_dir`)."""
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))


def replace_dir(staging: PathLike, out_dir: PathLike) -> None:
    """Publish a complete ``staging`` folder as ``out_dir``, replacing a previous one.

    Two renames: the old folder is moved aside, the new one moved in, the old one
    deleted. A reader sees the old output or the new one; a crash between the
    two renames leaves the old output intact under ``.<name>.old-*``.
    """
    staging, out_dir = Path(staging), Path(out_dir).absolute()
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
