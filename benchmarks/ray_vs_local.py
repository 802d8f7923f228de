"""Scoring throughput on a local Ray instance against a plain local run, side by side on this machine.

    .venv/bin/python benchmarks/ray_vs_local.py [--images DIR] [--engine ENGINE] [--repeats 2]

Defaults reuse what ``make bench`` leaves in ``benchmarks/work/`` (the 1080p JPEG dive and the ResNet18 224 px ONNX
engine); run that first, or pass your own. Each repeat scores the same dive from scratch (``--overwrite``) both
ways, interleaved:

* ``local``: ``fathombatch score`` with ``--threads`` = all cores;
* ``ray``: ``--ray --ray-workers N --cpus-per-worker 1`` on a local Ray instance that the command starts.

Per run: the wall time around the whole command and the time fathombatch's own summary line reports (both include,
for Ray, starting the local instance, as a user sees it). Ray's start-up alone (``ray.init`` + ``ray.shutdown`` with N
CPUs, in a fresh process) is measured too, so the steady-state rate can be told apart from the fixed cost.

Writes ``benchmarks/results/ray_vs_local.json`` and prints a Markdown table (median of the repeats).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FB = [sys.executable, "-m", "fathombatch"]
_SUMMARY = re.compile(r"Scored (\d+) files: (\d+) ok.*? in ([\d.]+) s \(([\d.]+) images/s")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_once(cmd: list[str]) -> dict[str, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    match = _SUMMARY.search(proc.stdout)
    if not match:
        raise SystemExit(f"no summary line in the output of {' '.join(cmd)}:\n{proc.stdout[-2000:]}")
    files, ok, seconds, _ = match.groups()
    return {"files": int(files), "ok": int(ok), "wall_s": wall, "scoring_s": float(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=HERE / "work" / "jpeg-1080p-384" / "images")
    parser.add_argument("--engine", type=Path, default=HERE / "work" / "engines" / "resnet18-224-train-600-e3.onnx")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    for path in (args.images, args.engine):
        if not path.exists():
            raise SystemExit(f"{path} does not exist: run `make bench` first or pass --images/--engine")
    cores = os.cpu_count() or 1
    common = ["--engine", str(args.engine), "--batch-size", str(args.batch_size), "--overwrite", "--quiet"]
    modes = {
        "local": ["--threads", str(cores)],
        "ray": ["--ray", "--ray-workers", str(cores), "--cpus-per-worker", "1"],
    }
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    load_before = os.getloadavg()[0]  # other jobs on a shared machine take cores from both modes alike, not equally
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for mode, extra in modes.items():  # interleaved, so drift in the machine's load hits both alike
                out = Path(tmp) / f"{mode}.parquet"
                rec = run_once([*FB, "score", str(args.images), "--out", str(out), *common, *extra])
                runs[mode].append(rec)
                print(f"[{time.strftime('%H:%M:%S')}] {mode} repeat {r + 1}: {rec['ok']} images, "
                      f"{rec['wall_s']:.1f} s wall, {rec['scoring_s']:.1f} s scoring", flush=True)
    init_code = (f"import time, ray; t = time.perf_counter(); ray.init(num_cpus={cores}, include_dashboard=False); "
                 "ray.get(ray.put(1)); print(time.perf_counter() - t); ray.shutdown()")
    ray_init = [float(subprocess.run([sys.executable, "-c", init_code], capture_output=True, text=True,
                                     check=True).stdout.split()[-1]) for _ in range(args.repeats)]
    summary = {}
    for mode, recs in runs.items():
        wall = statistics.median(r["wall_s"] for r in recs)
        scoring = statistics.median(r["scoring_s"] for r in recs)
        n = recs[0]["ok"]
        summary[mode] = {"images": n, "wall_s": wall, "scoring_s": scoring, "images_per_s_wall": n / wall,
                         "images_per_s_scoring": n / scoring}
    result = {"cores": cores, "cpu": platform.processor() or platform.machine(), "cpu_model": cpu_model(),
              "load_average": [load_before, os.getloadavg()[0]], "images": str(args.images),
              "engine": args.engine.name, "batch_size": args.batch_size, "repeats": args.repeats, "runs": runs,
              "ray_init_s": ray_init, "summary": summary}
    dest = HERE / "results" / "ray_vs_local.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| run | images | wall s | images/s (wall) | scoring s | images/s (scoring) |\n|---|---|---|---|---|---|")
    for mode, s in summary.items():
        print(f"| {mode} | {s['images']} | {s['wall_s']:.1f} | {s['images_per_s_wall']:.1f} | {s['scoring_s']:.1f} | "
              f"{s['images_per_s_scoring']:.1f} |")
    print(f"\nray.init with {cores} CPUs alone: median {statistics.median(ray_init):.1f} s")
    print(f"written {dest}")


if __name__ == "__main__":
    main()
