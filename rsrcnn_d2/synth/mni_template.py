"""The real anatomy behind the synthetic cohort: MNI152 2009a, as shipped inside nilearn's wheel.

`load_mni152_tissues` returns the 1 mm symmetric T1 template with its grey- and
white-matter probability maps, a cerebrospinal-fluid map (brain mask minus
grey and white matter) and the signed distance to the brain's surface, from
which a scalp and skull are built around the skull-stripped template and deep
grey matter is told from the cortex. Everything is cropped
to the brain plus a margin and cached per process: the cohort writer's worker
processes fork after the first load and share it. Nothing is downloaded.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["MNITissues", "load_mni152_tissues", "HEAD_MARGIN_MM"]

HEAD_MARGIN_MM = 14  # room outside the brain for extracerebral CSF, skull and scalp (adult mm)


@dataclass(frozen=True)
class MNITissues:
    """Template maps on one 1 mm grid (float32 (X, Y, Z), RAS+ voxel order).

    ``t1``: adult T1w intensity 0-1 (skull-stripped); ``gm``, ``wm``, ``csf``:
    tissue probabilities; ``surface_mm``: signed distance (mm) to the brain
    mask's surface, positive outside, negative inside; ``affine``: voxel -> MNI mm.
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    surface_mm: np.ndarray
    affine: np.ndarray


def _array(image) -> np.ndarray:
    return np.asarray(image.dataobj, dtype=np.float32)


@lru_cache(maxsize=1)
def load_mni152_tissues() -> MNITissues:
    """The MNI152 2009a template maps, cropped to the brain plus `HEAD_MARGIN_MM` (cached)."""
    try:
        from nilearn import datasets
    except ImportError as e:  # a dependency of the package: say how to get it
        raise ImportError(
            "the anatomy-based synthetic cohort needs nilearn "
            "(pip install nilearn); the phantom (--phantom) does not"
        ) from e
    from scipy import ndimage

    t1_image = datasets.load_mni152_template(resolution=1)
    t1 = _array(t1_image)
    gm = _array(datasets.load_mni152_gm_template(resolution=1))
    wm = _array(datasets.load_mni152_wm_template(resolution=1))
    brain = _array(datasets.load_mni152_brain_mask(resolution=1)) > 0
    lo = np.maximum(np.argwhere(brain).min(0) - HEAD_MARGIN_MM, 0)
    hi = np.minimum(np.argwhere(brain).max(0) + HEAD_MARGIN_MM + 1, brain.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    brain = brain[box]
    csf = np.clip(1.0 - gm[box] - wm[box], 0.0, 1.0) * brain
    surface = ndimage.distance_transform_edt(~brain) - ndimage.distance_transform_edt(brain)
    affine = t1_image.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ lo
    return MNITissues(
        t1=t1[box] * brain,
        gm=gm[box] * brain,
        wm=wm[box] * brain,
        csf=csf.astype(np.float32),
        surface_mm=surface.astype(np.float32),
        affine=affine,
    )
