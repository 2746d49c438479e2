"""Dense CRF refinement of each detected lesion's mask on its own image patch.

RS R-CNN's last stage: pydensecrf's fully connected CRF with two labels
(background, lesion), unary = -log([1 - p, p]), a Gaussian pairwise term and a
bilateral (position + intensity) term, run on the patch under the expanded box
at the output resolution. Running it per instance keeps its cost proportional to
the lesions' area rather than the slice's.
"""

import numpy as np
from detectron2.config import configurable
from detectron2.utils.registry import Registry

__all__ = ["DCRF_REGISTRY", "DenseCRFPostprocessor", "build_dcrf_postprocessor"]

DCRF_REGISTRY = Registry("DCRF")
DCRF_REGISTRY.__doc__ = """
Registry for mask postprocessors applied at inference, before thresholding.

A registered object is called as ``post(patch_u8, prob)`` with the image patch
(uint8, shape (h, w), scaled by `rsrcnn_d2.data.image_ops.to_uint8`) and the lesion
probability on it (float, shape (h, w)), and returns the refined probability
(float32, shape (h, w)). Chosen by ``MODEL.DCRF.NAME``; an empty name means no
postprocessor.
"""

_EPS = 1e-6


@DCRF_REGISTRY.register()
class DenseCRFPostprocessor:
    """pydensecrf DenseCRF2D with the paper's parameters (l1, l2, c1, e1).

    Args:
        gaussian_sxy: l1, the Gaussian pairwise term's standard deviation (pixels at the
            network's input scale).
        gaussian_compat: the Gaussian term's weight.
        bilateral_sxy: l2, the bilateral term's spatial standard deviation (pixels).
        bilateral_srgb: c1, its intensity standard deviation (8-bit units).
        bilateral_compat: the bilateral term's weight.
        iterations: e1, mean-field steps (0: the probability comes back unchanged).
    """

    @configurable
    def __init__(
        self,
        *,
        gaussian_sxy: float = 2.0,
        gaussian_compat: float = 3.0,
        bilateral_sxy: float = 4.0,
        bilateral_srgb: float = 6.0,
        bilateral_compat: float = 10.0,
        iterations: int = 1,
    ):
        import pydensecrf.densecrf as dcrf  # imported here: only needed when enabled

        self._dcrf = dcrf
        self.gaussian_sxy = float(gaussian_sxy)
        self.gaussian_compat = float(gaussian_compat)
        self.bilateral_sxy = float(bilateral_sxy)
        self.bilateral_srgb = float(bilateral_srgb)
        self.bilateral_compat = float(bilateral_compat)
        self.iterations = int(iterations)
        if min(self.gaussian_sxy, self.bilateral_sxy, self.bilateral_srgb) <= 0:
            raise ValueError("dense CRF standard deviations (sxy, srgb) must be > 0")
        if self.iterations < 0:
            raise ValueError(f"dense CRF iterations must be >= 0, got {self.iterations}")

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.DCRF
        return {
            "gaussian_sxy": c.GAUSSIAN_SXY,
            "gaussian_compat": c.GAUSSIAN_COMPAT,
            "bilateral_sxy": c.BILATERAL_SXY,
            "bilateral_srgb": c.BILATERAL_SRGB,
            "bilateral_compat": c.BILATERAL_COMPAT,
            "iterations": c.ITERATIONS,
        }

    def __call__(self, patch_u8: np.ndarray, prob: np.ndarray) -> np.ndarray:
        """Refine ``prob`` (h, w) on ``patch_u8`` (h, w) uint8; returns float32 (h, w)."""
        prob = np.asarray(prob, dtype=np.float32)
        if prob.ndim != 2 or patch_u8.shape[:2] != prob.shape:
            raise ValueError(f"patch {patch_u8.shape} and probability {prob.shape} differ")
        h, w = prob.shape
        if h == 0 or w == 0 or self.iterations == 0:
            return prob.copy()
        p = np.clip(prob, _EPS, 1.0 - _EPS)
        unary = -np.log(np.stack([1.0 - p, p]).reshape(2, -1))
        rgb = np.ascontiguousarray(np.repeat(np.asarray(patch_u8, np.uint8)[:, :, None], 3, axis=2))
        crf = self._dcrf.DenseCRF2D(w, h, 2)
        crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
        crf.addPairwiseGaussian(sxy=self.gaussian_sxy, compat=self.gaussian_compat)
        crf.addPairwiseBilateral(
            sxy=self.bilateral_sxy,
            srgb=self.bilateral_srgb,
            rgbim=rgb,
            compat=self.bilateral_compat,
        )
        q = np.asarray(crf.inference(self.iterations), dtype=np.float32)
        return q[1].reshape(h, w)


def build_dcrf_postprocessor(cfg):
    """The postprocessor named by MODEL.DCRF.NAME, or None when the name is empty."""
    name = cfg.MODEL.DCRF.NAME
    return DCRF_REGISTRY.get(name)(cfg) if name else None
