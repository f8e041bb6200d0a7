"""The training loop: schedule, clipping, non-finite losses, seeding, epochs, loss plot."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from runtime_fakes import FakeDetectionDataset, TinyLossModel

from rcnn_kit.engine import NonFiniteLossError, TrainConfig, lr_factor, plot_loss_history, train_detector
from rcnn_kit.engine.train import milestone_iterations


def _config(**overrides) -> TrainConfig:
    base = dict(max_iters=6, batch_size=2, lr=0.05, warmup_iters=0, lr_milestones=(), log_period=1,
                device="cpu", seed=0)
    base.update(overrides)
    return TrainConfig(**base)


def test_lr_factor_warmup_and_milestones_match_hand_values():
    config = _config(max_iters=100, warmup_iters=10, warmup_factor=0.1, lr_milestones=(0.5, 0.8), lr_gamma=0.1)
    assert milestone_iterations(config) == [50, 80]
    expected = {0: 0.1, 5: 0.55, 9: 0.91, 10: 1.0, 49: 1.0, 50: 0.1, 79: 0.1, 80: 0.01, 99: 0.01}
    for iteration, factor in expected.items():
        assert lr_factor(iteration, config) == pytest.approx(factor), iteration


def test_recorded_lr_follows_the_schedule_during_training():
    config = _config(max_iters=8, warmup_iters=4, warmup_factor=0.5, lr_milestones=(0.75,), lr_gamma=0.5)
    result = train_detector(TinyLossModel(), FakeDetectionDataset(), config, progress=False)
    # hand values: warm-up 0.5, 0.625, 0.75, 0.875, then 1, 1, decay at round(0.75 * 8) = 6
    factors = [0.5, 0.625, 0.75, 0.875, 1.0, 1.0, 0.5, 0.5]
    assert result.history["lr"] == pytest.approx([0.05 * f for f in factors])


def test_losses_are_recorded_finite_and_decrease():
    config = _config(max_iters=40, batch_size=4, lr=0.1)
    result = train_detector(TinyLossModel(), FakeDetectionDataset(), config, progress=False)
    assert result.iterations == 40
    assert set(result.history) == {"loss_a", "loss_b", "total", "lr", "grad_norm"}
    assert all(len(values) == 40 for values in result.history.values())
    assert all(math.isfinite(v) for v in result.history["total"])
    assert result.history["total"] == pytest.approx(
        [a + b for a, b in zip(result.history["loss_a"], result.history["loss_b"])]
    )
    assert sum(result.history["total"][-5:]) < 0.5 * sum(result.history["total"][:5])


def test_model_state_is_the_trained_model():
    model = TinyLossModel()
    result = train_detector(model, FakeDetectionDataset(), _config(), progress=False)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(result.model_state[name], tensor)
    assert "state" in result.optimizer_state


def test_clipping_bounds_the_update():
    # Plain SGD (no momentum, no decay, lr 1): the update equals the clipped gradient.
    clip = 0.5
    model = TinyLossModel(scale=1000.0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    config = _config(max_iters=1, lr=1.0, momentum=0.0, weight_decay=0.0, grad_clip_norm=clip)
    result = train_detector(model, FakeDetectionDataset(), config, progress=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert result.history["grad_norm"][0] > 10 * clip  # the raw gradient was far larger
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(clip, rel=1e-4)


def test_without_clipping_the_update_is_the_raw_gradient():
    model = TinyLossModel(scale=1000.0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    config = _config(max_iters=1, lr=1.0, momentum=0.0, weight_decay=0.0, grad_clip_norm=None)
    result = train_detector(model, FakeDetectionDataset(), config, progress=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(result.history["grad_norm"][0], rel=1e-4)


def test_non_finite_loss_names_iteration_and_loss():
    with pytest.raises(NonFiniteLossError, match=r"'loss_b'.*iteration 3"):
        train_detector(TinyLossModel(nan_at=3), FakeDetectionDataset(), _config(), progress=False)


def test_model_returning_a_tensor_is_a_type_error():
    class NotADict(TinyLossModel):
        def forward(self, images, gt_boxes):
            return sum(super().forward(images, gt_boxes).values())

    with pytest.raises(TypeError, match="dict of scalar losses"):
        train_detector(NotADict(), FakeDetectionDataset(), _config(), progress=False)


def test_same_seed_same_history_and_loops_over_epochs():
    dataset = FakeDetectionDataset(num_items=3)  # batch 2 over 3 items: epochs of 2 batches

    def run(seed: int):
        torch.manual_seed(0)  # same initial weights every time; only the loop's seed varies
        return train_detector(TinyLossModel(), dataset, _config(max_iters=7, seed=seed), progress=False)

    runs = [run(5), run(5)]
    assert runs[0].history == runs[1].history
    other = run(6)  # another shuffling order
    assert other.history["total"] != runs[0].history["total"]


@pytest.mark.parametrize(
    "overrides, argument",
    [({"max_iters": 0}, "max_iters"), ({"lr": -1.0}, "lr"), ({"lr_milestones": (0.8, 0.2)}, "lr_milestones"),
     ({"grad_clip_norm": 0.0}, "grad_clip_norm"), ({"warmup_iters": -1}, "warmup_iters")],
)
def test_bad_config_values_name_the_argument(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        _config(**overrides)


def test_loss_plot_is_written_by_output_dir_and_directly(tmp_path):
    config = _config(max_iters=5, output_dir=str(tmp_path / "run"))
    result = train_detector(TinyLossModel(), FakeDetectionDataset(), config, progress=False)
    with Image.open(tmp_path / "run" / "loss.png") as image:
        assert image.format == "PNG" and image.size[0] > 100
    path = plot_loss_history(result.history, tmp_path / "again" / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loss_plot_without_losses_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="history"):
        plot_loss_history({"lr": [0.1, 0.2]}, tmp_path / "x.png")
