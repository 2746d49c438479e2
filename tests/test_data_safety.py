"""Data safety of the conversion (issue 11): nothing written outside the output, nothing of the
user's deleted, no staging or worker left after a kill, the umask respected, palette PNGs read
as grey, NaN masks and blank images refused, bad --fractions reported as a usage error."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsrcnn_d2.data.convert import convert_pwml
from rsrcnn_d2.data.errors import PWMLDataError
from rsrcnn_d2.data.fileio import atomic_write_bytes, read_slice
from rsrcnn_d2.data.nifti import read_nifti_pair
from rsrcnn_d2.data.slice_pairs import read_slice_pair
from rsrcnn_d2.data.sources import SubjectSource

from test_data_fixtures import cohort, save_nifti, small_cohort  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def _pair(folder, name="a"):
    """One NIfTI subject (non-constant image, two lesion voxels); returns (image, mask) paths."""
    image = np.arange(10 * 12 * 4, dtype=np.float32).reshape(10, 12, 4)
    mask = np.zeros((10, 12, 4), np.uint8)
    mask[2, 3, 1] = mask[7, 5, 2] = 1
    return (
        save_nifti(Path(folder) / f"{name}_t1.nii", image),
        save_nifti(Path(folder) / f"{name}_mask.nii", mask),
    )


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


# ---------------------------------------------------------------- 1. path traversal


@pytest.mark.parametrize(
    "subject", ["../../../escaped", "/tmp/abs_subject", "", ".", "..", "a/b", "a\\b", "sp ace"]
)
@pytest.mark.parametrize("kind", ["csv", "json"])
def test_unsafe_subject_ids_are_refused(tmp_path, subject, kind):
    src = tmp_path / "deep" / "er" / "src"
    _pair(src)
    if kind == "csv":
        lst = src / "pairs.csv"
        lst.write_text(
            f"subject,image,mask\nok,a_t1.nii,a_mask.nii\n{subject},a_t1.nii,a_mask.nii\n"
        )
        where = "line 3"
    else:
        lst = src / "pairs.json"
        lst.write_text(
            json.dumps(
                [
                    {"subject": "ok", "image": "a_t1.nii", "mask": "a_mask.nii"},
                    {"subject": subject, "image": "a_t1.nii", "mask": "a_mask.nii"},
                ]
            )
        )
        where = "entry 1"
    before = _tree(tmp_path)
    with pytest.raises(PWMLDataError) as err:
        convert_pwml(lst, tmp_path / "deep" / "out", workers=1)
    assert str(err.value).startswith(str(lst)) and where in str(err.value)
    assert "subject id" in str(err.value)
    assert _tree(tmp_path) == before
    assert not Path("/tmp/abs_subject").exists()


def test_subject_source_list_cannot_escape_the_output(tmp_path):
    i, m = _pair(tmp_path / "src")
    subjects = [SubjectSource("../escaped", "nifti", image=i, mask=m)]
    with pytest.raises(PWMLDataError, match="subject id"):
        convert_pwml(subjects, tmp_path / "out", workers=1)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "out").exists()


def test_output_path_helper_refuses_paths_outside_root(tmp_path):
    from rsrcnn_d2.data.fileio import output_path

    assert (
        output_path(tmp_path, "images", "s1", "s1_0001.npy") == tmp_path / "images/s1/s1_0001.npy"
    )
    for parts in (("..", "x"), ("images", "../../x"), ("/etc/passwd",)):
        with pytest.raises(PWMLDataError, match="outside the output folder"):
            output_path(tmp_path, *parts)
    (tmp_path / "images").symlink_to(tmp_path.parent)  # a link inside the root leads out
    with pytest.raises(PWMLDataError, match="outside the output folder"):
        output_path(tmp_path, "images", "x.npy")


# ---------------------------------------------------------------- 2. data loss


def test_foreign_files_in_a_previous_output_survive(cohort, tmp_path):
    out = tmp_path / "v"
    out.mkdir()
    (out / "conversion.json").write_text("{}")
    (out / "NOTES.txt").write_text("notes\n")
    convert_pwml(cohort, out, workers=1)
    assert (out / "NOTES.txt").read_text() == "notes\n"
    summary = json.loads((out / "conversion.json").read_text())
    assert "NOTES.txt" not in summary["files"] and "splits.json" in summary["files"]
    assert set(summary["files"]) == {p for p in _tree(out) if (out / p).is_file()} - {"NOTES.txt"}
    # a re-run replaces its own files only: a foreign file inside images/ survives too
    (out / "images" / "mine.txt").write_text("mine")
    stale = out / "images" / "PWML_000" / "PWML_000_9999.npy"
    stale.write_bytes(b"x")
    convert_pwml(cohort, out, workers=1, seed=3)
    assert (out / "images" / "mine.txt").read_text() == "mine"
    assert (out / "NOTES.txt").read_text() == "notes\n"
    assert stale.exists()  # not in the manifest: not ours, kept
    assert [p.name for p in tmp_path.iterdir()] == ["v"]  # no staging / old folders left


def test_own_files_of_a_previous_run_are_removed(tmp_path):
    raw = small_cohort(tmp_path / "raw", n=3)
    out = tmp_path / "out"
    convert_pwml(raw, out, workers=1)
    assert (out / "images" / "PWML_002").is_dir()
    for f in raw.glob("*/PWML_002*"):
        f.unlink()
    convert_pwml(raw, out, workers=1)
    assert not (out / "images" / "PWML_002").exists()


def test_foreign_file_where_the_tool_writes_is_refused(cohort, tmp_path):
    out = tmp_path / "out"
    convert_pwml(cohort, out, workers=1)
    summary = json.loads((out / "conversion.json").read_text())
    summary["files"].remove("splits.json")  # as if the user had put splits.json there
    (out / "conversion.json").write_text(json.dumps(summary))
    (out / "splits.json").write_text("user's")
    with pytest.raises(PWMLDataError, match="not written by a previous conversion"):
        convert_pwml(cohort, out, workers=1)
    assert (out / "splits.json").read_text() == "user's"


def test_output_containing_or_inside_the_input_is_refused(tmp_path):
    out = tmp_path / "v"
    raw = small_cohort(out / "cohort", n=2)
    (out / "conversion.json").write_text("{}")
    before = _tree(out)
    with pytest.raises(PWMLDataError, match="contains the input"):
        convert_pwml(raw, out, workers=1)
    with pytest.raises(PWMLDataError, match="inside the input"):
        convert_pwml(raw, raw / "converted", workers=1)
    assert _tree(out) == before


def test_symlinked_output_or_subfolder_is_refused(cohort, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    link = tmp_path / "out"
    link.symlink_to(target)
    with pytest.raises(PWMLDataError, match="symbolic link"):
        convert_pwml(cohort, link, workers=1)
    out = tmp_path / "real"
    convert_pwml(cohort, out, workers=1)
    import shutil

    shutil.rmtree(out / "images")
    (out / "images").symlink_to(target)
    with pytest.raises(PWMLDataError, match="symbolic link"):
        convert_pwml(cohort, out, workers=1)
    assert _tree(target) == ["keep.txt"] and link.is_symlink()


def test_cli_repro_keeps_notes(cohort, tmp_path, capsys):
    """The program (in this process: its script and console entry are tests/test_tools_layout's)
    converts again into its own output and keeps a file it did not write there."""
    from rsrcnn_d2.cli.prepare import main

    out = tmp_path / "v"
    out.mkdir()
    (out / "conversion.json").write_text("{}")
    (out / "NOTES.txt").write_text("notes\n")
    assert main([str(cohort), "--output", str(out), "--workers", "1"]) == 0
    assert (out / "NOTES.txt").read_text() == "notes\n"
    capsys.readouterr()
    assert main([str(cohort), "--output", str(cohort / "sub"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "inside the input" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- 3. killed runs

_SLOW_RUN = """
import sys, time
sys.path.insert(0, {tests!r})
import rsrcnn_d2.data.convert as c
real = c.convert_subject
def slow(*a, **k):
    out = real(*a, **k)
    time.sleep(60)
    return out
c.convert_subject = slow
c.convert_pwml({src!r}, {out!r}, workers=2)
"""


def _children(pid):
    kids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat_file.parent.name))
    return kids


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(workers):
    """True once every worker has ended; the test kills leftovers so that none outlives it."""
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    gone = not any(_alive(w) for w in workers)
    for w in workers:
        if _alive(w):
            os.kill(w, signal.SIGKILL)
    return gone


def _start_slow_run(src, out):
    code = _SLOW_RUN.format(tests=str(REPO / "tests"), src=str(src), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    deadline = time.time() + 60
    while time.time() < deadline:
        staging = list(out.parent.glob(f".{out.name}.staging-*"))
        workers = _children(proc.pid)
        if staging and len(workers) >= 2 and list(staging[0].rglob("*.npy")):
            return proc, staging[0], workers
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("conversion did not start")


def _signalled_run(tmp_path, signum):
    """A slow conversion of 3 subjects into tmp_path/out, sent ``signum`` once its workers run."""
    raw = small_cohort(tmp_path / "raw", n=3)
    out = tmp_path / "out"
    proc, staging, workers = _start_slow_run(raw, out)
    proc.send_signal(signum)
    return raw, out, proc, staging, workers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_leaves_no_workers_and_next_run_cleans_staging(tmp_path):
    raw, out, proc, staging, workers = _signalled_run(tmp_path, signal.SIGKILL)
    proc.wait()
    assert _wait_gone(workers)
    assert staging.is_dir()  # SIGKILL cannot be caught: the next run cleans up
    other = tmp_path / f".{out.name}.staging-notours"  # not our naming: left alone
    other.mkdir()
    from rsrcnn_d2.data.fileio import _host

    live = tmp_path / f".{out.name}.staging-{_host()}-{os.getpid()}-abcd1234"  # its process lives
    elsewhere = (
        tmp_path / f".{out.name}.staging-other_machine-999999-abcd1234"
    )  # pid not ours to see
    elsewhere.mkdir()
    live.mkdir()
    convert_pwml(raw, out, workers=1)
    assert not staging.exists() and other.is_dir() and live.is_dir() and elsewhere.is_dir()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_ends_the_run_and_removes_its_staging(tmp_path):
    _, out, proc, staging, workers = _signalled_run(tmp_path, signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert _wait_gone(workers)
    assert not staging.exists() and not out.exists()


# ---------------------------------------------------------------- 4. permissions


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_respect_the_umask(cohort, tmp_path, umask):
    old = os.umask(umask)
    try:
        written = atomic_write_bytes(tmp_path / "f.bin", b"x")
        out = tmp_path / "out"
        convert_pwml(cohort, out, workers=2)
    finally:
        os.umask(old)
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    assert stat.S_IMODE(written.stat().st_mode) == file_mode
    paths = [out, *out.rglob("*")]
    assert {stat.S_IMODE(p.stat().st_mode) for p in paths if p.is_dir()} == {dir_mode}
    assert {stat.S_IMODE(p.stat().st_mode) for p in paths if p.is_file()} == {file_mode}


# ---------------------------------------------------------------- 10. palette and other PNG modes


def _palette_png(path, colour=False):
    """Index i shows grey 255 - 10 i: indices differ from the grey values."""
    grey = np.array([255 - 10 * i for i in range(20)], np.uint8)
    palette = np.repeat(grey[:, None], 3, axis=1)
    if colour:
        palette[3] = (200, 10, 10)
    indices = (np.arange(6 * 8).reshape(6, 8) % 20).astype(np.uint8)
    im = Image.fromarray(indices, mode="P")
    im.putpalette(palette.ravel().tolist())
    im.save(path)
    return indices, grey[indices]


def test_palette_png_is_read_as_its_grey_values(tmp_path):
    indices, grey = _palette_png(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == "P"
    np.testing.assert_array_equal(read_slice(tmp_path / "p.png"), grey.astype(np.float32))
    _palette_png(tmp_path / "c.png", colour=True)
    with pytest.raises(PWMLDataError, match="colour"):
        read_slice(tmp_path / "c.png")


def test_grey_alpha_and_16_bit_pngs(tmp_path):
    grey = (np.arange(6 * 8).reshape(6, 8) * 5).astype(np.uint8)
    la = np.stack([grey, np.full_like(grey, 255)], -1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_slice(tmp_path / "la.png"), grey)
    rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], -1)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_slice(tmp_path / "rgba.png"), grey)
    wide = (np.arange(6 * 8).reshape(6, 8) * 1000).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "w.png")
    np.testing.assert_array_equal(read_slice(tmp_path / "w.png"), wide.astype(np.float32))
    Image.fromarray(grey).convert("CMYK").save(tmp_path / "c.tif")
    with pytest.raises(PWMLDataError, match="CMYK"):
        read_slice(tmp_path / "c.tif")


# ---------------------------------------------------------------- 12. NaN masks, blank images


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_mask_is_refused_even_with_binarize(tmp_path, bad):
    image = np.arange(8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3)
    mask = np.zeros((8, 8, 3), np.float32)
    mask[2, 2, 1] = 1
    mask[4, 4, 1] = bad
    i, m = save_nifti(tmp_path / "i.nii", image), save_nifti(tmp_path / "m.nii", mask)
    for binarize in (False, True):
        with pytest.raises(PWMLDataError, match="NaN or infinite") as err:
            read_nifti_pair(i, m, binarize=binarize)
        assert err.value.path == str(m)
    Image.fromarray(mask[:, :, 1]).save(tmp_path / "m.tif")
    Image.fromarray(image[:, :, 1]).save(tmp_path / "i.tif")
    with pytest.raises(PWMLDataError, match="NaN or infinite") as err:
        read_slice_pair(tmp_path / "i.tif", tmp_path / "m.tif", binarize=True)
    assert err.value.path == str(tmp_path / "m.tif")


@pytest.mark.parametrize("value", [0, 37])
def test_constant_image_is_refused(tmp_path, value):
    mask = np.zeros((8, 8, 3), np.uint8)
    mask[2, 2, 1] = 1
    i = save_nifti(tmp_path / "i.nii", np.full((8, 8, 3), value, np.int16))
    m = save_nifti(tmp_path / "m.nii", mask)
    with pytest.raises(PWMLDataError, match="constant") as err:
        read_nifti_pair(i, m)
    assert err.value.path == str(i)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(tmp_path / "i.png")
    Image.fromarray(mask[:, :, 1] * 255).save(tmp_path / "m.png")
    with pytest.raises(PWMLDataError, match="constant") as err:
        read_slice_pair(tmp_path / "i.png", tmp_path / "m.png")
    assert err.value.path == str(tmp_path / "i.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "m0.png")  # blank, no lesion: ok
    assert read_slice_pair(tmp_path / "i.png", tmp_path / "m0.png")[1].sum() == 0


# ---------------------------------------------------------------- 13. bad --fractions


@pytest.mark.parametrize(
    "fractions",
    [["0.5", "0.5", "0.5"], ["-0.2", "0.6", "0.6"], ["nan", "0.5", "0.5"], ["1", "0", "inf"]],
)
def test_bad_fractions_are_a_usage_error(tmp_path, capsys, fractions):
    from rsrcnn_d2.cli import prepare as prepare_pwml  # tools/prepare_pwml.py's program

    with pytest.raises(SystemExit) as ex:
        prepare_pwml.main(
            [str(tmp_path), "--output", str(tmp_path / "o"), "--fractions", *fractions]
        )
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--fractions" in err[-1] and "sum to 1" in err[-1]


def test_bad_folds_name_the_source(cohort, tmp_path, capsys):
    from rsrcnn_d2.cli import prepare as prepare_pwml  # tools/prepare_pwml.py's program

    assert prepare_pwml.main([str(cohort), "--output", str(tmp_path / "o"), "--folds", "9"]) == 2
    assert "cannot make 9 folds of 6 subjects" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ex:
        prepare_pwml.main([str(cohort), "--output", str(tmp_path / "o"), "--folds", "-1"])
    assert ex.value.code == 2


def test_resplit_keeps_the_manifest_and_foreign_fold_files(cohort, tmp_path):
    from rsrcnn_d2.data.convert import resplit_pwml

    out = tmp_path / "out"
    convert_pwml(cohort, out, workers=1)
    (out / "annotations" / "instances_fold9_val.json").write_text("user's")
    resplit_pwml(out, seed=2, num_folds=2)
    files = json.loads((out / "conversion.json").read_text())["files"]
    assert "annotations/instances_fold1_val.json" in files
    assert "annotations/instances_fold4_val.json" not in files
    assert not (out / "annotations" / "instances_fold4_val.json").exists()
    assert (out / "annotations" / "instances_fold9_val.json").read_text() == "user's"
    assert set(files) == {p for p in _tree(out) if (out / p).is_file()} - {
        "annotations/instances_fold9_val.json"
    }
