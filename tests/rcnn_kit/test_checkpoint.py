"""Checkpoint round trip, atomic writes and the errors for missing, foreign or mismatched files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rcnn_kit.checkpoint import CheckpointMismatchError, load_checkpoint, read_checkpoint, save_checkpoint


def _net(hidden: int = 4, extra: bool = False) -> nn.Module:
    layers = [nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 2)]
    if extra:
        layers.append(nn.Linear(2, 2))
    return nn.Sequential(*layers)


def _trained_pair() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = _net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = model(torch.randn(5, 3)).square().sum()
    loss.backward()
    optimizer.step()  # creates momentum buffers worth restoring
    return model, optimizer


def test_round_trip_restores_weights_optimizer_and_metadata(tmp_path):
    model, optimizer = _trained_pair()
    path = save_checkpoint(tmp_path / "sub" / "ckpt.pt", model, optimizer, config={"num_classes": 3, "sizes": [1, 2]},
                           iteration=7, extra={"class_names": ["a", "b", "c"]})
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temporary file left behind

    torch.manual_seed(1)
    fresh = _net()
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    payload = load_checkpoint(path, fresh, fresh_opt)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    buffers = [s["momentum_buffer"] for s in fresh_opt.state_dict()["state"].values()]
    expected = [s["momentum_buffer"] for s in optimizer.state_dict()["state"].values()]
    for got, want in zip(buffers, expected, strict=True):
        torch.testing.assert_close(got, want)
    assert payload["iteration"] == 7
    assert payload["config"] == {"num_classes": 3, "sizes": [1, 2]}
    assert payload["extra"] == {"class_names": ["a", "b", "c"]}


def test_overwrite_replaces_the_file(tmp_path):
    model, _ = _trained_pair()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, iteration=1)
    save_checkpoint(path, model, iteration=2)
    assert read_checkpoint(path)["iteration"] == 2


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_checkpoint(tmp_path / "nothere.pt", _net())


def test_missing_and_unexpected_names_are_listed(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.pt", _net(extra=True))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected in the checkpoint \(2\): 3.bias, 3.weight"):
        load_checkpoint(path, _net())
    path = save_checkpoint(tmp_path / "small.pt", _net())
    with pytest.raises(CheckpointMismatchError, match=r"missing from the checkpoint \(2\): 3.bias, 3.weight"):
        load_checkpoint(path, _net(extra=True))


def test_shape_mismatch_is_listed(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.pt", _net(hidden=4))
    with pytest.raises(CheckpointMismatchError, match=r"0.weight: checkpoint \(4, 3\) vs model \(5, 3\)"):
        load_checkpoint(path, _net(hidden=5))


def test_optimizer_requested_but_not_saved(tmp_path):
    model = _net()
    path = save_checkpoint(tmp_path / "ckpt.pt", model)
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(path, model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_foreign_file_is_rejected(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="not an rcnn_kit checkpoint"):
        read_checkpoint(path)


class _Payload:
    """An arbitrary pickled class: must never be unpickled by the loader."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "model": {}, "extra": _Payload()}, path)
    with pytest.raises(ValueError, match="could not be read as a safe torch checkpoint"):
        read_checkpoint(path)


def test_save_rejects_non_modules(tmp_path):
    with pytest.raises(TypeError, match="model"):
        save_checkpoint(tmp_path / "x.pt", {"w": torch.zeros(1)})  # type: ignore[arg-type]
