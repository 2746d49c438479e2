"""Hausdorff distance and HD95: hand-computed cases and an all-pairs brute force."""
import math

import numpy as np
import pytest

from rsrcnn_d2.evaluation import hausdorff, hausdorff95, hausdorff_distances
from rsrcnn_d2.evaluation.distance import directed_distances, union_bounding_box


def brute_force(a, b, spacing=None):
    """HD and pooled HD95 from every pair of foreground points (the definitions, literally)."""
    scale = np.ones(a.ndim) if spacing is None else np.asarray(spacing, float)
    pa, pb = np.argwhere(a) * scale, np.argwhere(b) * scale
    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))  # (na, nb)
    pooled = np.concatenate([d.min(axis=1), d.min(axis=0)])
    return pooled.max(), np.percentile(pooled, 95)


def pixels(shape, *points):
    m = np.zeros(shape, bool)
    for p in points:
        m[p] = True
    return m


def test_single_pixels_3_4_5():
    a, b = pixels((8, 8), (0, 0)), pixels((8, 8), (3, 4))
    assert hausdorff(a, b) == 5.0
    assert hausdorff95(a, b) == 5.0
    # rows 0.5 mm, columns 2 mm: sqrt(1.5^2 + 8^2)
    assert hausdorff(a, b, spacing=(0.5, 2.0)) == pytest.approx(math.sqrt(66.25))


def test_hd95_is_the_pooled_percentile():
    truth, pred = pixels((3, 3), (0, 0), (0, 1)), pixels((3, 3), (0, 0))
    # pred->truth: [0]; truth->pred: [0, 1]; pooled [0, 0, 1]; 95th pct = 0.9 (linear)
    hd, hd95 = hausdorff_distances(pred, truth)
    assert hd == 1.0 and hd95 == pytest.approx(0.9)


def test_empty_masks():
    empty, one = np.zeros((5, 5), bool), pixels((5, 5), (2, 2))
    assert hausdorff_distances(empty, empty) == (0.0, 0.0)
    assert all(math.isnan(v) for v in hausdorff_distances(one, empty))
    assert all(math.isnan(v) for v in hausdorff_distances(empty, one))
    assert hausdorff(one, one) == 0.0


def test_symmetric_and_3d():
    a = pixels((4, 6, 6), (0, 0, 0), (1, 1, 1))
    b = pixels((4, 6, 6), (3, 0, 0))
    assert hausdorff(a, b) == hausdorff(b, a) == 3.0
    assert hausdorff(a, b, spacing=(2.0, 1.0, 1.0)) == 6.0


@pytest.mark.parametrize("method", ["pairs", "kdtree", "edt", "auto"])
def test_random_masks_match_brute_force(method):
    rng = np.random.default_rng(1234)
    for trial in range(40):
        ndim = 2 if trial % 4 else 3
        shape = tuple(rng.integers(3, 24, size=ndim))
        density = rng.uniform(0.01, 0.3)
        a, b = rng.random(shape) < density, rng.random(shape) < density
        a.flat[rng.integers(a.size)] = True
        b.flat[rng.integers(b.size)] = True
        spacing = None if trial % 2 else tuple(rng.uniform(0.3, 3.0, size=ndim))
        hd, hd95 = hausdorff_distances(a, b, spacing, method=method)
        ref_hd, ref_hd95 = brute_force(a, b, spacing)
        assert hd == pytest.approx(ref_hd, rel=1e-9)
        assert hd95 == pytest.approx(ref_hd95, rel=1e-9)


def test_far_apart_lesions_on_a_large_slice():
    a, b = pixels((512, 512), (10, 20), (11, 20)), pixels((512, 512), (500, 490))
    assert hausdorff(a, b) == pytest.approx(brute_force(a, b)[0])
    assert hausdorff(a, b) == pytest.approx(math.hypot(490, 470))


def test_directed_distances_and_box():
    a, b = pixels((6, 6), (0, 0), (0, 3)), pixels((6, 6), (0, 1), (5, 5))
    np.testing.assert_allclose(directed_distances(a, b), [1.0, 2.0])
    assert union_bounding_box(a, b) == (slice(0, 6), slice(0, 6))
    assert union_bounding_box(np.zeros((3, 3), bool)) is None
    with pytest.raises(ValueError, match="non-empty"):
        directed_distances(a, np.zeros_like(b))


def test_bad_arguments():
    a = pixels((4, 4), (1, 1))
    with pytest.raises(ValueError, match="shapes"):
        hausdorff(a, np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="spacing"):
        hausdorff(a, a, spacing=(1.0,))
    with pytest.raises(ValueError, match="spacing"):
        hausdorff(a, a, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="method"):
        hausdorff_distances(a, a, method="fast")
