"""The validation-loss hook reads the validation losses without disturbing training."""

from types import SimpleNamespace

import pytest
import torch
from detectron2.utils.events import EventStorage, get_event_storage
from torch import nn

from rsrcnn_d2.engine.validation_loss import ValidationLossHook, validation_losses


class _LossModel(nn.Module):
    """Losses from the batch: loss_a = mean input, loss_rpn_cls = 2 x mean input; it logs a
    scalar of its own to the current storage and records the mode it ran in."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(1.0))
        self.modes = []

    def forward(self, inputs):
        self.modes.append((self.training, torch.is_grad_enabled()))
        get_event_storage().put_scalar("model_internal", 123.0)
        x = torch.tensor([float(v) for v in inputs]) * self.weight
        return {"loss_a": x.mean(), "loss_rpn_cls": 2 * x.mean()}


@pytest.mark.parametrize("training", [True, False])
def test_losses_are_image_weighted_means_and_the_mode_is_restored(training):
    model = _LossModel().train(training)
    losses = validation_losses(model, [[1.0], [2.0, 3.0, 6.0]])
    # weighted by images: loss_a = (1 x 1 + 3 x 11/3) / 4 = 3
    assert losses == pytest.approx({"loss_a": 3.0, "loss_rpn_cls": 6.0, "total_loss": 9.0})
    assert model.modes == [(True, False), (True, False)]  # training mode for losses, no gradients
    assert model.training is training
    assert model.weight.grad is None


def test_the_mode_is_restored_when_the_model_fails():
    model = _LossModel().eval()
    with pytest.raises(TypeError):
        validation_losses(model, [[None]])
    assert model.training is False


@pytest.mark.parametrize("training", [True, False])
def test_hook_writes_only_its_scalars_to_the_training_storage(training):
    model = _LossModel().train(training)
    with EventStorage(start_iter=7) as storage:
        storage.put_scalar("loss_a", 0.5)  # what training logged at this iteration
        before = {k: list(h.values()) for k, h in storage.histories().items()}
        trainer = SimpleNamespace(model=model, storage=storage, iter=7, max_iter=100, start_iter=0)
        hook = ValidationLossHook(period=4, batches_fn=lambda: [[1.0, 3.0]])
        hook.trainer = trainer
        hook.after_step()  # iteration 8 is a multiple of the period
        after = {k: list(h.values()) for k, h in storage.histories().items()}
    assert model.training is training
    assert set(after) == set(before) | {"validation_loss", "validation_loss_rpn_cls"}
    assert after["loss_a"] == before["loss_a"]  # the training loss history untouched
    assert "model_internal" not in after  # the model's own logging went to a throw-away storage
    assert after["validation_loss"] == [(6.0, 7)] and after["validation_loss_rpn_cls"] == [(4.0, 7)]
    # model_best.pth follows the total validation loss, the LR cut the monitored one
    assert hook.lowest == 6.0
