"""Hausdorff distance and HD95: hand-computed cases and an all-pairs brute force."""

import math

import numpy as np
import pytest

from rsrcnn_d2.evaluation import hausdorff, hausdorff95, hausdorff_distances
from rsrcnn_d2.evaluation.distance import (
    directed_distances,
    hausdorff95_all_pixels,
    union_bounding_box,
)


def _edge_points(mask):
    """Foreground points with a background (or outside) axis neighbour, by looping."""
    points = []
    for p in np.argwhere(mask):
        for axis in range(mask.ndim):
            for step in (-1, 1):
                q = p.copy()
                q[axis] += step
                if not (0 <= q[axis] < mask.shape[axis]) or not mask[tuple(q)]:
                    points.append(p)
                    break
            else:
                continue
            break
    return np.array(points)


def _nearest(pa, pb):
    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))  # (na, nb)
    return d.min(axis=1), d.min(axis=0)


def brute_force(a, b, spacing=None):
    """HD over all pixels and the standard boundary HD95 from every pair of points, literally."""
    scale = np.ones(a.ndim) if spacing is None else np.asarray(spacing, float)
    ab, ba = _nearest(np.argwhere(a) * scale, np.argwhere(b) * scale)
    hd = max(ab.max(), ba.max())
    ab, ba = _nearest(_edge_points(a) * scale, _edge_points(b) * scale)
    return hd, max(np.percentile(ab, 95), np.percentile(ba, 95))


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


def test_hd95_is_the_larger_directed_percentile():
    truth, pred = pixels((3, 3), (0, 0), (0, 1)), pixels((3, 3), (0, 0))
    # pred->truth: [0] -> 0; truth->pred: [0, 1] -> 95th pct 0.95 (linear); the larger: 0.95
    hd, hd95 = hausdorff_distances(pred, truth)
    assert hd == 1.0 and hd95 == pytest.approx(0.95)
    # the earlier pooled variant: [0, 0, 1] -> 0.9
    assert hausdorff95_all_pixels(pred, truth) == pytest.approx(0.9)
    # two lesions at 3 and 4 px from a one-pixel truth: pred->truth [3, 4] -> 3.95
    truth, pred = pixels((1, 6), (0, 0)), pixels((1, 6), (0, 3), (0, 4))
    assert hausdorff95(pred, truth) == pytest.approx(3.95)
    assert hausdorff95(pred, truth, spacing=(2.0, 0.5)) == pytest.approx(1.975)


def test_hd95_uses_boundaries_not_interiors():
    # truth: a 5x5 square; pred: its inner 3x3. All-pixel distances are 0 inside the
    # truth; boundary to boundary, every pred edge pixel is 1 from the truth's ring,
    # and the truth's 12 side pixels are 1 and its 4 corners sqrt(2) from pred's ring:
    # the 95th percentile of [1 x 12, sqrt2 x 4] is sqrt(2)
    truth = np.zeros((7, 7), bool)
    truth[1:6, 1:6] = True
    pred = np.zeros_like(truth)
    pred[2:5, 2:5] = True
    hd, hd95 = hausdorff_distances(pred, truth)
    assert hd == pytest.approx(math.sqrt(2))  # all pixels: the truth's corners
    assert hd95 == pytest.approx(math.sqrt(2))
    # identical squares: boundaries coincide
    assert hausdorff_distances(truth, truth) == (0.0, 0.0)
    # a 3-D single voxel is its own boundary; anisotropic voxels
    a, b = pixels((3, 3, 3), (0, 0, 0)), pixels((3, 3, 3), (2, 0, 1))
    assert hausdorff95(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(math.sqrt(17))


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
