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

Permissions: ``mkstemp`` and ``mkdtemp`` create 0600 files and 0700 folders
whatever the umask; renamed into place they would keep those modes, so every
file and staging folder made here is given the mode a plain ``open`` or
``mkdir`` would have had (0666 / 0777 minus the umask).
"""

import json
import math
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from ..writable import check_writable
from .errors import PWMLDataError

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "read_json",
    "json_safe",
    "nan_for_null",
    "save_slice",
    "read_slice",
    "replace_dir",
    "staging_dir_for",
    "remove_stale_staging",
    "output_path",
    "check_inside_output",
    "check_writable",
    "current_umask",
]

PathLike = Union[str, os.PathLike]


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore
    os.umask(mask)
    return mask


def check_inside_output(path: PathLike, output: PathLike) -> Path:
    """Where writing ``path`` lands; PWMLDataError unless that is inside ``output``.

    The folders above ``path`` are resolved (a symlinked folder would take the
    file elsewhere); ``path``'s own name is not, because the atomic rename
    replaces a link of that name instead of writing through it.
    """
    path, root = Path(path), Path(output).resolve()
    where = path.absolute().parent.resolve() / path.name
    if path.name in ("", ".", "..") or not where.is_relative_to(root):
        raise PWMLDataError(
            path,
            f"lies outside the output folder {root} once symlinks are followed "
            f"(it would be written to {where}); remove the symlink or "
            "choose another output folder",
        )
    return where


def output_path(root: PathLike, *parts: str) -> Path:
    """``root/part/...`` checked by `check_inside_output`: no subject id or file name, however
    made, places a file outside the output folder (every path a conversion writes comes here)."""
    return check_inside_output(Path(root).absolute().joinpath(*parts), root)


def atomic_write(path: PathLike, write: Callable[[str], None], binary_handle: bool = False) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    A reader sees the old file or the new one, never half of one; on any failure the
    temporary file is removed and ``path`` is untouched.

    Args:
        path: the file to write; its folder is created.
        write: ``write(tmp)`` fills the temporary file. The temporary name keeps
            ``path``'s endings (``.nii.gz``) for writers that choose the format from
            the name.
        binary_handle: pass ``write`` an open binary file instead of a name (for
            writers such as np.save that would add a suffix).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    endings = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{endings}", dir=path.parent)
    try:
        try:
            os.chmod(tmp, 0o666 & ~current_umask())
        except OSError:  # file systems without modes: nothing to fix
            pass
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


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float as None: JSON has no NaN, and Python's
    ``NaN`` token breaks every other JSON reader (jq, JavaScript, pandas' strict mode)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def nan_for_null(figures: Any) -> Any:
    """Figures read back from JSON: null (an undefined value) as NaN again, recursively
    through dicts and lists, so that means, comparisons and formats treat it as before."""
    if figures is None:
        return math.nan
    if isinstance(figures, dict):
        return {k: nan_for_null(v) for k, v in figures.items()}
    if isinstance(figures, list):
        return [nan_for_null(v) for v in figures]
    return figures


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as valid JSON to ``path`` through a temporary file and a rename;
    undefined figures (NaN) become null (`json_safe`)."""
    text = json.dumps(json_safe(obj), separators=(",", ":"), allow_nan=False)
    atomic_write_bytes(path, text.encode())


def read_json(path: PathLike) -> Any:
    """Load a JSON file; unreadable or malformed files raise PWMLDataError."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise PWMLDataError(path, f"cannot read JSON ({e})") from e


def save_slice(path: PathLike, image: np.ndarray) -> None:
    """Save a slice as float32 .npy. Callers write into a staging folder.

    ``image``: an (H, W) slice, or the (2, H, W) neighbours the converter stores beside it.
    """
    np.save(path, np.ascontiguousarray(image, dtype=np.float32), allow_pickle=False)


def _same_channels(rgb: np.ndarray) -> bool:
    return all(np.array_equal(rgb[..., 0], rgb[..., c]) for c in range(1, rgb.shape[-1]))


def _grey_pixels(im, path: str) -> np.ndarray:
    """The grey values of a PIL image, whatever its mode; colour images are refused.

    Palette images hold indices into a colour table: their grey value is the
    table's entry, not the index. Alpha channels are ignored.
    """
    mode = im.mode
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        return np.asarray(im)
    if mode in ("P", "PA"):
        rgb = np.asarray(im.convert("RGB"))
        if not _same_channels(rgb):
            raise PWMLDataError(
                path,
                "colour palette image (mode P) with different R, G, B; expected a grey T1w slice",
            )
        return rgb[..., 0]
    if mode == "LA":
        return np.asarray(im)[..., 0]
    if mode in ("RGB", "RGBA", "RGBX"):
        rgb = np.asarray(im)[..., :3]
        if not _same_channels(rgb):
            raise PWMLDataError(
                path, f"colour image with different channels {rgb.shape}; expected a grey T1w slice"
            )
        return rgb[..., 0]
    raise PWMLDataError(
        path,
        f"unsupported image mode {mode}; expected a grey T1w slice "
        "(L, I;16, I, F, or RGB/palette with equal channels)",
    )


def read_slice(path: PathLike) -> np.ndarray:
    """A grey slice as float32 (H, W): ``.npy`` from the converter, or any image PIL reads.

    PIL images are read without rescaling (8- or 16-bit values as stored); colour
    images must have identical channels, as a T1w slice saved as RGB does;
    palette images give their palette's grey values.
    """
    path = str(path)
    try:
        if path.endswith(".npy"):
            image = np.load(path, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                image = _grey_pixels(im, path)
    except PWMLDataError:
        raise
    except Exception as e:  # numpy / PIL raise many types for truncated files
        raise PWMLDataError(path, f"cannot read slice image ({type(e).__name__}: {e})") from e
    if image.ndim == 3:  # .npy
        if not _same_channels(image[..., :3]):
            raise PWMLDataError(
                path,
                f"colour image with different channels {image.shape}; expected a grey T1w slice",
            )
        image = image[..., 0]
    if image.ndim != 2:
        raise PWMLDataError(path, f"expected a 2-D slice, got shape {image.shape}")
    return image.astype(np.float32, copy=False)


def _staging_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.staging-"


def _host() -> str:
    """This machine's name in a form safe inside a file name (letters, digits, _)."""
    import socket

    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"


def staging_dir_for(out_dir: PathLike) -> Path:
    """A fresh, empty folder beside ``out_dir`` on the same file system (for `replace_dir`).

    Its name, ``.<out>.staging-<host>-<pid>-<random>``, records the creating machine
    and process, so that `remove_stale_staging` can tell the leftovers of a killed
    run from the staging folder of a run still in progress (on a shared file system
    another machine's processes cannot be seen, so their folders are never touched).
    """
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(
            prefix=f"{_staging_prefix(out_dir)}{_host()}-{os.getpid()}-", dir=out_dir.parent
        )
    )
    os.chmod(staging, 0o777 & ~current_umask())
    return staging


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, another user's
        return False
    try:  # a zombie has finished too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def remove_stale_staging(out_dir: PathLike) -> list:
    """Delete staging folders of ``out_dir`` left by runs that were killed; return them.

    Only folders named as `staging_dir_for` names them, made on this machine, and
    whose creating process no longer exists are removed; anything else beside
    ``out_dir`` is left alone.
    """
    out_dir = Path(out_dir).absolute()
    pattern = re.compile(
        re.escape(f"{_staging_prefix(out_dir)}{_host()}-") + r"(\d+)-[A-Za-z0-9_]+"
    )
    removed = []
    if not out_dir.parent.is_dir():
        return removed
    for entry in out_dir.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if (
            match
            and entry.is_dir()
            and not entry.is_symlink()
            and int(match.group(1)) != os.getpid()
            and _process_gone(int(match.group(1)))
        ):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


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
