"""Loading weights that runs no code from the file and says what it did not fill.

detectron2's checkpointer unpickles ``.pkl`` files with ``pickle.load`` (a
payload runs) and only warns, among hundreds of lines, when a checkpoint leaves
layers of the model at their random initialisation (weights of another row
then predict near-empty masks with exit 0). `SafeCheckpointer` reads ``.pkl``
with an unpickler that builds numpy arrays and nothing else, ``.pth`` and
``.pyth`` with torch's ``weights_only`` passed explicitly (no environment
variable turns it off), turns every unreadable file into a `WeightsError`,
and either refuses a partial fit or logs one table of what was loaded.
`load_model_weights` is the one checked loading every tool uses.

Weights of another *input form* fit every tensor and still see inputs they were never trained
on (2.5-D neighbour channels fed to a 2-D model, another intensity normalisation, another
row's heads of the same shapes): checkpoints we write record `input_form` (the config keys
that define it) and a checked load under other values is refused the same way.
"""

import codecs
import logging
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from .errors import PWMLDataError, WeightsError

__all__ = [
    "SafeCheckpointer",
    "adapt_checkpoint",
    "load_model_weights",
    "load_trainer_weights",
    "restricted_unpickle",
    "fit_table",
    "trained_weights",
    "fold_checkpoints",
    "INPUT_FORM_KEYS",
    "input_form",
    "form_differences",
]

logger = logging.getLogger(__name__)

# How many missing parameter names an error message shows.
SHOWN_NAMES = 5

# The config keys that define what a network's weights expect: what its three input channels
# mean (2.5-D neighbours or copies, head crop), how intensities are scaled, and which heads
# (rows whose heads have the same tensor shapes: B's mask head under C's k-expanded ROIs).
# MODEL.DCRF and the operating point are not among them: row E runs row D's weights.
INPUT_FORM_KEYS = (
    "INPUT.FORMAT",
    "INPUT.NEIGHBOR_SLICES",
    "INPUT.CROP_TO_HEAD",
    "MODEL.RSRCNN.NORMALIZATION",
    "MODEL.PIXEL_MEAN",
    "MODEL.PIXEL_STD",
    "MODEL.META_ARCHITECTURE",
    "MODEL.PROPOSAL_GENERATOR.NAME",
    "MODEL.ROI_HEADS.NAME",
    "MODEL.ROI_MASK_HEAD.NAME",
    "MODEL.ROI_MASK_HEAD.EXPANSION_K",
)
# per-image z-scoring ignores the pixel mean and std
_UNUSED_UNDER_ZSCORE = ("MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD")


def _plain(value):
    """A config value as checkpoints store it: tuples as lists, numbers and strings as they are."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def input_form(cfg) -> dict[str, object]:
    """``{key: value}`` of `INPUT_FORM_KEYS` in ``cfg`` (keys the config lacks are left out)."""
    form = {}
    for key in INPUT_FORM_KEYS:
        node = cfg
        for part in key.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if node is not None:
            form[key] = _plain(node)
    return form


def form_differences(recorded: dict[str, object], expected: dict[str, object]) -> list[str]:
    """``"KEY: <checkpoint's> in the weights, <config's> here"`` for every key both know and that
    differs; the pixel mean and std only where either side scales by them."""
    zscore = (
        "zscore"
        == recorded.get("MODEL.RSRCNN.NORMALIZATION")
        == expected.get("MODEL.RSRCNN.NORMALIZATION")
    )
    diffs = []
    for key in INPUT_FORM_KEYS:
        if key not in recorded or key not in expected or (zscore and key in _UNUSED_UNDER_ZSCORE):
            continue
        if _plain(recorded[key]) != _plain(expected[key]):
            diffs.append(f"{key}: {recorded[key]} in the weights, {expected[key]} here")
    return diffs


def _latin1_bytes(text, encoding="latin1"):
    """``_codecs.encode`` as protocol <= 2 pickles written by Python 3 use it for bytes,
    latin-1 only."""
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(text, str):
        raise pickle.UnpicklingError(
            f"_codecs.encode with {encoding!r} is not a numpy array's bytes"
        )
    return codecs.encode(text, "latin1")


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The globals a pickled numpy array, dtype or scalar names, under numpy 1.x and 2.x
    module names."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays; any other global is refused."""

    _allowed = None

    def find_class(self, module, name):
        if _NumpyOnlyUnpickler._allowed is None:
            _NumpyOnlyUnpickler._allowed = _numpy_globals()
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a weights .pkl may "
                "hold only numpy arrays, strings and numbers"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing a persistent id: not a numpy weights file")


def restricted_unpickle(path: str):
    """Unpickle ``path`` admitting exactly what numpy arrays need; `WeightsError` otherwise."""
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise WeightsError(path, f"unsafe or corrupt pickle: {e}") from None
    except OSError as e:
        raise WeightsError(path, f"cannot read weights file ({e.strerror or e})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise WeightsError(path, f"truncated or corrupt pickle ({type(e).__name__}: {e})") from None


def _group(name: str) -> str:
    """The module prefix a tensor is counted under in the fit table: two levels, numbered
    siblings together (backbone.fpn_lateral2..5 -> backbone.fpn_lateral*)."""
    parts = name.split(".")
    if len(parts) <= 2:
        return parts[0]
    return f"{parts[0]}.{re.sub(r'[0-9]+$', '*', parts[1])}"


def fit_table(
    model_keys: list[str],
    missing: list[str],
    unexpected: list[str],
    incorrect_shapes: list[tuple[str, tuple, tuple]],
) -> str:
    """The fit of a partial load as one table, instead of detectron2's scattered warnings.

    Args:
        model_keys: the model's state-dict keys.
        missing: model keys the checkpoint did not fill (those of another shape included).
        unexpected: checkpoint keys the model does not have.
        incorrect_shapes: ``(key, checkpoint shape, model shape)`` of each shape mismatch.

    Returns:
        Text: per module prefix, how many tensors were loaded, re-initialised (missing or of
        another shape) and left unused in the checkpoint (absent from the model, or of
        another shape), a total row, and the first mismatched shapes.
    """
    rows: dict[str, list[int]] = OrderedDict()
    missing_set = set(missing)
    for key in model_keys:
        counts = rows.setdefault(_group(key), [0, 0, 0])
        counts[1 if key in missing_set else 0] += 1
    for key in list(unexpected) + [k for k, _, _ in incorrect_shapes]:
        rows.setdefault(_group(key), [0, 0, 0])[2] += 1
    width = max([len("module")] + [len(k) for k in rows])
    lines = [f"{'module':<{width}}  {'loaded':>8}  {'re-initialised':>14}  {'unused':>6}"]
    for prefix, (loaded, reinit, unused) in rows.items():
        lines.append(f"{prefix:<{width}}  {loaded:>8}  {reinit:>14}  {unused:>6}")
    total = [sum(c[i] for c in rows.values()) for i in range(3)]
    lines.append(f"{'total':<{width}}  {total[0]:>8}  {total[1]:>14}  {total[2]:>6}")
    if incorrect_shapes:
        shown = ", ".join(
            f"{k} {tuple(c)} vs {tuple(m)}" for k, c, m in incorrect_shapes[:SHOWN_NAMES]
        )
        lines.append(
            f"({len(incorrect_shapes)} re-initialised for a shape mismatch, checkpoint vs "
            f"model: {shown}{', ...' if len(incorrect_shapes) > SHOWN_NAMES else ''})"
        )
    return "\n".join(lines)


def adapt_checkpoint(model, state: dict, source: Optional[str] = None) -> list[str]:
    """Let each module of ``model`` that has an ``adapt_checkpoint(state, prefix)`` method
    (`HRPNHead`: a one-logit RPN classifier into its two-way one) rewrite its own tensors of a
    checkpoint's model dict before loading, and log what was rewritten.

    Returns the modules' lines on what they rewrote. Keys of other names (Caffe2's, before
    detectron2 renames them) are left alone; a DDP checkpoint's ``module.`` lead is allowed.
    """
    lead = "module." if state and all(str(k).startswith("module.") for k in state) else ""
    rewritten = []
    for name, module in model.named_modules():
        adapt = getattr(module, "adapt_checkpoint", None)
        if callable(adapt):
            rewritten += adapt(state, f"{lead}{name}." if name else lead)
    if rewritten:
        logger.info(
            "%s, rewritten for this model: %s", source or "checkpoint", "; ".join(rewritten)
        )
    return rewritten


class SafeCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that runs no code from a weights file and checks the fit.

    ``incompatible`` holds detectron2's ``_IncompatibleKeys`` of the last load (after its
    renaming of Caffe2 / model-zoo keys).

    Args:
        model, save_dir: as DetectionCheckpointer's.
        allow_partial: False: a checkpoint that leaves any model parameter or buffer
            uninitialised raises `WeightsError` (before any optimizer or other state is
            loaded from it; the model itself is then half-loaded and is to be dropped).
            True: it loads what fits and logs one table by module.
        input_form: `input_form` of the model's config: written into every checkpoint this
            checkpointer saves, and compared with the one a loaded checkpoint records; a
            difference is refused like a partial fit (a warning under ``allow_partial``).
            Checkpoints that record none (COCO's, earlier releases') are not checked.
        kwargs: checkpointables and ``save_to_disk``, as DetectionCheckpointer's.
    """

    def __init__(
        self,
        model,
        save_dir: str = "",
        *,
        allow_partial: bool = False,
        input_form: Optional[dict[str, object]] = None,
        **kwargs,
    ):
        super().__init__(model, save_dir, **kwargs)
        self.allow_partial = allow_partial
        self.input_form = input_form
        self.incompatible = None
        self._path: Optional[str] = None

    def save(self, name: str, **kwargs) -> None:
        """As the parent's, but the checkpoint also records ``input_form`` (when set)."""
        if self.input_form:
            kwargs.setdefault("input_form", self.input_form)
        super().save(name, **kwargs)

    def load(self, path, *args, **kwargs):
        """As the parent's, but a missing, unreadable or ill-fitting file raises `WeightsError`."""
        # detectron2 accepts "file.pth?matching_heuristics=True": the query is not part of the name
        if (
            path
            and "://" not in path
            and not os.path.isfile(path.split("?", 1)[0])
            and not os.path.isfile(path)
        ):
            raise WeightsError(path, "weights file does not exist")
        self._path, self.incompatible = path, None
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._path = None

    def _load_file(self, filename):
        if filename.endswith(".pkl"):
            return self._model_zoo_dict(filename, restricted_unpickle(filename))
        if filename.endswith(".pyth"):  # detectron2 reads pycls files with a bare torch.load
            return self._pycls_dict(filename, self._checked(filename, self._torch_load))
        return self._checked(filename, super()._load_file)

    @staticmethod
    def _checked(filename, load):
        """``load(filename)``, any failure of reading the file a `WeightsError` naming it."""
        try:
            return load(filename)
        except WeightsError:
            raise
        except (
            pickle.UnpicklingError,
            EOFError,
            RuntimeError,
            ValueError,
            AssertionError,
            TypeError,
            OSError,
        ) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise WeightsError(
                filename,
                f"cannot load weights ({type(e).__name__}: {first}); "
                "truncated, corrupt, or holding more than tensors",
            ) from None

    @staticmethod
    def _pycls_dict(filename, data):
        """A pycls checkpoint's ``model_state``, renamed by detectron2's matching heuristics."""
        if not isinstance(data, dict) or not isinstance(data.get("model_state"), dict):
            raise WeightsError(filename, "a pycls .pyth checkpoint must hold a 'model_state' dict")
        weights = {
            k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")
        }
        return {"model": weights, "__author__": "pycls", "matching_heuristics": True}

    @staticmethod
    def _model_zoo_dict(filename, data):
        """detectron2's .pkl layouts: its model zoo's {"model": ..., "__author__": ...}, else
        a Caffe2 / Detectron1 dict of blobs, renamed by detectron2's matching heuristics."""
        if not isinstance(data, dict):
            raise WeightsError(
                filename, f"a weights .pkl must hold a dict, not {type(data).__name__}"
            )
        if "model" in data and "__author__" in data:
            return data
        blobs = data.get("blobs", data)
        if not isinstance(blobs, dict):
            raise WeightsError(filename, "the 'blobs' of a Caffe2 .pkl must be a dict")
        weights = {k: v for k, v in blobs.items() if not str(k).endswith("_momentum")}
        return {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}

    def _torch_load(self, f):
        return torch.load(f, map_location=torch.device("cpu"), weights_only=True)

    def _check_input_form(self, checkpoint) -> None:
        recorded = checkpoint.get("input_form")
        if not (isinstance(recorded, dict) and self.input_form):
            return
        diffs = form_differences(recorded, self.input_form)
        if not diffs:
            return
        problem = "weights trained for another input form (" + "; ".join(diffs) + ")"
        if not self.allow_partial:
            raise WeightsError(self._path, f"{problem} (--allow-partial-weights loads them anyway)")
        logger.warning("%s: %s", self._path, problem)

    def _load_model(self, checkpoint):
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
            raise WeightsError(self._path, "not a checkpoint: no dict of tensors under 'model'")
        self._check_input_form(checkpoint)
        adapt_checkpoint(self.model, checkpoint["model"], self._path)
        try:
            incompatible = super()._load_model(checkpoint)
        except (ValueError, TypeError, AttributeError, RuntimeError) as e:
            raise WeightsError(
                self._path, f"cannot load these weights into the model ({e})"
            ) from None
        self.incompatible = incompatible
        if incompatible.missing_keys and not self.allow_partial:
            missing = incompatible.missing_keys
            shown = ", ".join(missing[:SHOWN_NAMES]) + (
                ", ..." if len(missing) > SHOWN_NAMES else ""
            )
            total = len(self.model.state_dict())
            raise WeightsError(
                self._path,
                f"leaves {len(missing)} of the model's {total} weight "
                f"tensors uninitialised ({shown}): weights of another "
                "model? (--allow-partial-weights loads them anyway)",
            )
        return incompatible

    def _log_incompatible_keys(self, incompatible):
        """One table instead of detectron2's scattered warnings; one line when all fits."""
        keys = list(self.model.state_dict())
        if not (incompatible.missing_keys or incompatible.unexpected_keys):
            logger.info("loaded all %d parameters of the model from %s", len(keys), self._path)
            return
        table = fit_table(
            keys,
            incompatible.missing_keys,
            incompatible.unexpected_keys,
            incompatible.incorrect_shapes,
        )
        logger.warning(
            "weights %s fit the model only in part (tensors per module):\n%s", self._path, table
        )


def load_model_weights(
    model,
    weights: str,
    *,
    allow_partial: bool = False,
    save_dir: str = "",
    resume: bool = False,
    input_form: Optional[dict[str, object]] = None,
):
    """Load ``weights`` into ``model`` with `SafeCheckpointer`; the checked loading of every tool.

    Args:
        model: the model to fill.
        weights: a ``.pth``, ``.pkl`` or ``.pyth`` file (or what detectron2's path manager
            resolves).
        allow_partial: load what fits and log the fit table instead of refusing.
        save_dir, resume: with ``resume``, the last checkpoint of ``save_dir`` is loaded
            instead, as detectron2's ``resume_or_load``.
        input_form: of the model's config; refuses weights trained for another (see
            `SafeCheckpointer`).

    Returns:
        detectron2's ``_IncompatibleKeys`` of the load (None when nothing was loaded).
    """
    checkpointer = SafeCheckpointer(
        model, save_dir, allow_partial=allow_partial, input_form=input_form
    )
    checkpointer.resume_or_load(weights, resume=resume)
    return checkpointer.incompatible


def load_trainer_weights(trainer, resume: bool) -> None:
    """``trainer.resume_or_load(resume)`` through a `SafeCheckpointer` with the same
    checkpointables.

    Training may start from a foreign checkpoint (ImageNet, another row, another input form):
    what does not fit is re-initialised and shown in the fit table, not refused. A trainer
    whose checkpointer is already a `SafeCheckpointer` (train_net's, which records the input
    form) keeps it: its periodic checkpointer hook writes through it.
    """
    old = trainer.checkpointer
    if isinstance(old, SafeCheckpointer):
        old.allow_partial = True
    else:
        trainer.checkpointer = SafeCheckpointer(
            old.model,
            old.save_dir,
            allow_partial=True,
            save_to_disk=old.save_to_disk,
            **old.checkpointables,
        )
    trainer.resume_or_load(resume=resume)


def trained_weights(run_dir) -> Path:
    """The weights a training run's final evaluation used: ``model_best.pth`` (the best
    validation, SOLVER.BEST_CHECKPOINT) where training kept one, else ``model_final.pth``.

    Here, beside the loading, so that prediction (an ensemble of a CV output's
    folds) and the experiment drivers pick a run's weights by one rule.
    """
    best = Path(run_dir) / "model_best.pth"
    return best if best.is_file() else Path(run_dir) / "model_final.pth"


def fold_checkpoints(model_folder, folds: Optional[list[int]] = None) -> list[Path]:
    """The trained weights (`trained_weights`) of each ``fold_<i>`` of a cross-validation
    output, in fold order; all of them when ``folds`` is None. PWMLDataError names a missing
    folder or an unfinished fold."""
    root = Path(model_folder)
    if not root.is_dir():
        raise PWMLDataError(root, "model folder does not exist")
    if folds is None:
        folds = sorted(int(p.name[5:]) for p in root.glob("fold_*") if p.name[5:].isdigit())
        if not folds:
            raise PWMLDataError(root, "no fold_<i> folders: not a tools/run_cv.py output")
    found = []
    for fold in folds:
        weights = trained_weights(root / f"fold_{fold}")
        if not weights.is_file():
            raise PWMLDataError(
                root / f"fold_{fold}",
                "no model_best.pth or model_final.pth: has this fold finished training?",
            )
        found.append(weights)
    return found
