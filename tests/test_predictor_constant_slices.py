"""LesionPredictor's shortcut: constant slices (empty field of view) never reach the model."""

import numpy as np
import torch

from rsrcnn_d2.inference.predictor import LesionPredictor


class _Recorder:
    """Stands for an eval-mode RSRCNN: every pixel lesion with probability 0.75; records its
    inputs."""

    def __init__(self):
        self.batches = []

    def __call__(self, inputs):
        self.batches.append([x["image"][0].clone() for x in inputs])
        return [
            {
                "lesion_mask": torch.ones(x["height"], x["width"], dtype=torch.bool),
                "lesion_prob": torch.full((x["height"], x["width"]), 0.75),
            }
            for x in inputs
        ]


def test_constant_slices_are_not_shown_to_the_model_and_are_all_zero():
    varied = np.arange(12, dtype=np.float32).reshape(3, 4)
    slices = [
        np.zeros((3, 4), np.float32),
        varied,
        np.full((5, 2), 7.0, np.float32),
        varied[::-1].copy(),
        np.zeros((0, 4), np.float32),
        np.full((1, 1), -3.0, np.float32),
    ]
    model = _Recorder()
    out = LesionPredictor(model, batch_size=4).predict_slices(slices)
    # one batch holding only the two slices with contrast, in order
    assert [len(b) for b in model.batches] == [2]
    assert torch.equal(model.batches[0][0], torch.from_numpy(varied))
    assert torch.equal(model.batches[0][1], torch.from_numpy(varied[::-1].copy()))
    for i in (0, 2, 4, 5):
        assert out[i].mask.shape == out[i].prob.shape == slices[i].shape
        assert out[i].mask.dtype == bool and out[i].prob.dtype == np.float32
        assert not out[i].mask.any() and not out[i].prob.any()
    for i in (1, 3):
        assert out[i].mask.all() and (out[i].prob == 0.75).all()


def test_all_constant_slices_never_call_the_model():
    model = _Recorder()
    predictor = LesionPredictor(model, batch_size=2)
    out = predictor.predict_slices([np.full((8, 8), v, np.float32) for v in (0.0, 1.0, 1e4)])
    assert model.batches == [] and [p.mask.sum() for p in out] == [0, 0, 0]
    assert not predictor(np.zeros((6, 6), np.int16)).prob.any() and model.batches == []
