"""benchmarks/nms_rpn.py: the previous reference it keeps agrees with the greedy one, and a tiny run works."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torchvision import ops

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "nms_rpn.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nms_rpn_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", range(3))
def test_previous_reference_matches_greedy_and_torchvision(ref, bench, seed):
    g = torch.Generator().manual_seed(seed)
    boxes, _ = bench.plain_boxes(300, g)
    scores = torch.randperm(300, generator=g).float()  # distinct scores
    previous = bench.previous_reference_nms(boxes, scores, 0.7, iou=ref.iou.iou)
    assert torch.equal(previous, ref.nms.nms(boxes, scores, 0.7))
    assert torch.equal(previous, ops.nms(boxes, scores, 0.7))


def test_tiny_run_writes_every_workload(bench, tmp_path, capsys):
    out = tmp_path / "nms.json"
    argv = ["--device", "cpu", "--iters", "1", "--warmup", "0", "--batch-sizes", "1", "--sizes", "50,80",
            "--json", str(out)]
    assert bench.main(argv) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    assert [row["workload"] for row in rows] == [
        "RPN predict_proposals, batch 1", "RPN forward (eval), batch 1", "nms, N = 50", "nms, N = 80",
    ]
    assert rows[0]["detail"].startswith("3 nms calls")  # one per FPN level
    for row in rows:
        assert set(row["median_ms"]) == {"previous", "greedy", "torchvision"}
        assert all(value > 0 for value in row["median_ms"].values())
    assert "greedy/prev" in capsys.readouterr().out


def test_bad_sizes_are_refused(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--sizes", "100,-4"])
