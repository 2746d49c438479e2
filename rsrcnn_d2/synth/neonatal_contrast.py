"""Neonatal T1w contrast painted on template tissue maps, plus a scalp and skull.

At term-equivalent age the white matter is largely unmyelinated and therefore
darker than the cortical ribbon on T1w; deep grey nuclei are brighter still,
CSF is dark, and the scalp's fat is the brightest thing in the image. The
adult template is skull-stripped, so the layers outside the brain
(extracerebral CSF, skull, scalp) are built from the distance to the brain's
surface, each with a thickness that varies smoothly over the head. Values are
relative to white matter = 1; partial volume comes from the probability maps
and from soft layer edges.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["TissueContrast", "random_tissue_contrast", "neonatal_t1w"]


@dataclass(frozen=True)
class TissueContrast:
    """One subject's tissue intensities (white matter = 1) and head-layer thicknesses (mm)."""

    grey: float
    deep_grey: float
    csf: float
    skull: float
    scalp: float
    csf_mm: float
    skull_mm: float
    scalp_mm: float


def random_tissue_contrast(rng: np.random.Generator) -> TissueContrast:
    """Draw a subject's contrast: ordering fixed by anatomy, levels varying by scanner and
    infant."""
    return TissueContrast(
        grey=rng.uniform(1.30, 1.55),
        deep_grey=rng.uniform(1.40, 1.70),
        csf=rng.uniform(0.22, 0.40),
        skull=rng.uniform(0.20, 0.45),
        scalp=rng.uniform(2.8, 3.6),
        csf_mm=rng.uniform(0.8, 2.0),
        skull_mm=rng.uniform(0.8, 1.6),
        scalp_mm=rng.uniform(1.8, 3.0),
    )


def _step(x: np.ndarray, width: float = 0.35) -> np.ndarray:
    # soft 0 -> 1 step at x = 0: the partial volume of a layer edge
    return 1.0 / (1.0 + np.exp(-np.clip(x / width, -30, 30)))


def neonatal_t1w(
    maps: dict[str, np.ndarray],
    contrast: TissueContrast,
    scale: float,
    thickness_jitter: np.ndarray,
) -> np.ndarray:
    """Noise-free T1w intensity (float32) from tissue maps sampled on the acquisition grid.

    Args:
        maps: ``gm``, ``wm``, ``csf`` probabilities and ``surface_mm`` (template mm,
            positive outside the brain), each (X, Y, Z).
        contrast: the subject's tissue levels and layer thicknesses.
        scale: converts template mm to subject mm.
        thickness_jitter: (X, Y, Z) mm, moves the layer edges.

    Returns:
        (X, Y, Z) float32, white matter = 1.
    """
    gm, wm, csf = maps["gm"], maps["wm"], maps["csf"]
    surface = maps["surface_mm"] * np.float32(scale)
    # deep nuclei: grey matter more than ~12 mm (subject) below the brain's surface
    deep = _step(-surface - 12.0, width=2.0)
    brain = (
        wm + gm * (contrast.grey + (contrast.deep_grey - contrast.grey) * deep) + csf * contrast.csf
    )
    inside = np.clip(gm + wm + csf, 0.0, 1.0)

    d = np.maximum(surface, 0.0) + thickness_jitter
    e1 = contrast.csf_mm
    e2 = e1 + contrast.skull_mm
    e3 = e2 + contrast.scalp_mm
    layers = (
        contrast.csf * (1 - _step(d - e1))
        + contrast.skull * (_step(d - e1) - _step(d - e2))
        + contrast.scalp * (_step(d - e2) - _step(d - e3))
    )
    return (inside * brain + (1 - inside) * layers).astype(np.float32)
