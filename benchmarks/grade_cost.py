"""What grading one submission costs: wall time, CPU time and the peak memory of the whole
process tree (grader + sandboxed children), for docs/INSTRUCTORS.md's platform settings.

The grader runs as ``python -m autograder grade ...`` in a child process; this script samples
the summed resident memory (RSS) of that process and all its descendants every
``--interval`` seconds (the children live in their own PID namespace under bubblewrap, but
the host sees them), and the CPU time of each process of the tree from /proc at each sample
(the sandbox children are killed, not reaped through the grader, so ``wait4``'s rusage misses
them; a process shorter than one sample is missed too).

Examples::

    python benchmarks/grade_cost.py                        # the reference, unit checks and overfit
    python benchmarks/grade_cost.py --skip-overfit         # unit checks only
    python benchmarks/grade_cost.py --submission path.zip  # any submission
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from a checkout
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # machine_info beside this script
import torch  # noqa: E402
from machine_info import machine_info  # noqa: E402
from rcnn_kit.course import REFERENCE_DIR  # noqa: E402

#: Bytes per kB in /proc/<pid>/status.
KB = 1024
#: utime and stime in /proc/<pid>/stat, counted from the field after the command name (proc(5)).
STAT_UTIME, STAT_STIME = 11, 12
#: Clock ticks per second of those fields.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_sample(root: int, cpu_seen: dict[int, float]) -> int:
    """Summed VmRSS (bytes) of ``root`` and every process below it; records each one's CPU seconds.

    ``cpu_seen[pid]`` keeps the latest user + system time of each process of the tree: the
    grader ends its sandbox children with SIGKILL, so their CPU never reaches ``wait4``'s rusage.
    """
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read().rsplit(")", 1)[1].split()  # fields after the command name
        except OSError:
            continue
        parents[int(name)] = int(fields.get("PPid", "0").strip())
        rss[int(name)] = int(fields.get("VmRSS", "0 kB").split()[0]) * KB
        cpu[int(name)] = (int(stat[STAT_UTIME]) + int(stat[STAT_STIME])) / CLOCK_TICKS
    members, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier and pid not in members}
        members |= frontier
    for pid in members:
        if pid in cpu:
            cpu_seen[pid] = max(cpu_seen.get(pid, 0.0), cpu[pid])
    return sum(rss.get(pid, 0) for pid in members)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submission", type=Path, default=None, help="zip or folder (default: a copy of the reference)")
    parser.add_argument("--skip-overfit", action="store_true", help="unit checks only")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--interval", type=float, default=0.2, help="memory sampling period in seconds")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rcnn-grade-cost-") as tmp:
        submission = args.submission
        if submission is None:
            submission = Path(tmp) / "reference"
            shutil.copytree(REPO_ROOT / REFERENCE_DIR, submission / "faster_rcnn", ignore=shutil.ignore_patterns("__pycache__"))
        cmd = [sys.executable, "-m", "autograder", "grade", str(submission), "--device", args.device,
               "--results", str(Path(tmp) / "results.json")] + (["--skip-overfit"] if args.skip_overfit else [])
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)
        peak = [0]
        cpu_seen: dict[int, float] = {}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree_sample(proc.pid, cpu_seen))
                time.sleep(args.interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
        done.set()
        sampler.join()
        output = proc.stdout.read() if proc.stdout else ""
    total = next((line for line in output.splitlines() if line.startswith("TOTAL")), "TOTAL ?")
    print(output.strip().splitlines()[-1] if output.strip() else "")
    info = machine_info(torch.device("cuda" if args.device == "cuda" else "cpu"))
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"command: {' '.join(cmd[1:])}")
    print(f"exit status: {os.waitstatus_to_exitcode(status)}; {' '.join(total.split())}")
    grader_cpu = usage.ru_utime + usage.ru_stime
    tree_cpu = max(grader_cpu, sum(cpu_seen.values()))
    print(f"wall {wall:.1f} s; CPU of the whole tree {tree_cpu:.1f} s ({len(cpu_seen)} processes seen; the grader "
          f"and what it reaped: {grader_cpu:.1f} s); peak RSS of grader + children {peak[0] / 2**30:.2f} GiB "
          f"(sampled every {args.interval:g} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
