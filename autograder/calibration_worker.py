"""One calibration run in its own process: ``python -m autograder.calibration_worker JOB.json``.

``rcnn-kit calibrate-overfit`` (:mod:`autograder.calibration`) starts one such process per
run (a fresh interpreter: no state carries over between runs, and several run side by side).
The job file names the package to train (the reference, or a broken variant already
written by the parent), the training seed, the profile file and the data folder. The run
goes through the same probe as the sandboxed child (:func:`probes_overfit.overfit_train`,
in this process: these packages are trusted copies of the reference) and is scored as the
grader scores it. The result is printed as one line ``RESULT_PREFIX + JSON``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

#: Prefix of the result line on stdout.
RESULT_PREFIX = "CALIBRATION-RESULT "


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train and score one package; returns the result row (``error`` set when the run failed).

    Args:
        job: ``{"package": folder, "module_name": str, "seed": int, "profile": TOML path,
            "data": folder, "image_size": int}``.

    Returns:
        ``{"map_50", "recall_50", "loss_start", "loss_end", "detections", "run_s" (probe wall
        seconds), "cpu_s" (probe CPU seconds), "error"}``.
    """
    from autograder.overfit_check import in_process_probe, run_overfit
    from autograder.overfit_data import load_folder
    from autograder.overfit_profile import load_profile
    from rcnn_kit.impl import import_all

    profile = load_profile(job["profile"]).replace(seed=int(job["seed"]))
    data = load_folder(job["data"], int(job["image_size"]), str(job["data"]))
    pkg = import_all(job["package"], name=job["module_name"])
    cpu_start = time.process_time()
    try:
        _, report = run_overfit(in_process_probe(pkg), data, profile)
    except Exception as exc:  # a broken variant may crash or diverge: that is a failing run, with its reason
        return {"map_50": 0.0, "recall_50": 0.0, "loss_start": math.nan, "loss_end": math.nan, "detections": 0,
                "run_s": math.nan, "cpu_s": time.process_time() - cpu_start, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"map_50": report.map_50, "recall_50": report.recall_50, "loss_start": report.loss_start,
            "loss_end": report.loss_end, "detections": report.num_detections, "run_s": report.wall_time_s,
            "cpu_s": time.process_time() - cpu_start, "error": None}


def main(argv: list[str] | None = None) -> int:
    """Read the job file named by ``argv[0]``, run it, print the result line; exit code 0."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m autograder.calibration_worker JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    print(RESULT_PREFIX + json.dumps(run_job(job)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
