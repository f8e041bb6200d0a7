"""Time the similarity report (``rcnn-kit similarity``) on a generated batch of submissions.

The batch mixes, per TODO block, code from four independent styles and the reference
(tests/autograder/similarity_batch.py), with local variables renamed at random, and
writes the submissions in the three layouts the intake accepts (zip, package folder,
flat folder). The time covers the whole command: imports, unpacking, extraction,
fingerprinting, every pairwise comparison, the CSV and the HTML report.

Example::

    python benchmarks/similarity_speed.py --count 200
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "autograder"))  # the batch generator lives with the tests

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # machine_info beside this script
import similarity_batch  # noqa: E402
import torch  # noqa: E402
from machine_info import machine_info  # noqa: E402

#: Layouts the generated submissions cycle through.
LAYOUTS = ("zip", "package", "flat")


def write_batch(folder: Path, count: int, seed: int) -> None:
    """Write ``count`` generated submissions into ``folder``."""
    rng = random.Random(seed)
    stubs = similarity_batch.stubs()
    reference = similarity_batch.reference_blocks()
    for number in range(count):
        modules = similarity_batch.mutated(rng, stubs, reference)
        similarity_batch.write_submission(folder / f"student{number:04d}", modules, LAYOUTS[number % len(LAYOUTS)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="submissions in the batch (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generator (default 0)")
    parser.add_argument("--threshold", type=float, default=None, help="listing threshold (default: the command's)")
    args = parser.parse_args(argv)
    if args.count < 2:
        parser.error(f"--count: expected at least 2, got {args.count}")
    with tempfile.TemporaryDirectory(prefix="rcnn-similarity-bench-") as tmp:
        batch = Path(tmp) / "submissions"
        batch.mkdir()
        write_batch(batch, args.count, args.seed)
        command = [sys.executable, "-m", "rcnn_kit", "similarity", str(batch), "--out", str(Path(tmp) / "out")]
        if args.threshold is not None:
            command += ["--threshold", str(args.threshold)]
        path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and its worker processes
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        if proc.returncode != 0:
            print(f"rcnn-kit similarity failed with exit code {proc.returncode}", file=sys.stderr)
            return proc.returncode
    info = machine_info(torch.device("cpu"))
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()) + " (load before the end)")
    print(f"{args.count} submissions: {seconds:.1f} s wall, {cpu:.1f} CPU-seconds (all processes) for `rcnn-kit similarity`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
