"""Time MAP@20 on a 100,000 x 290 probability matrix (the spine's "well under a second" claim).

Run: .venv/bin/python benchmarks/metrics_speed.py [--rows 100000] [--repeats 5]
Prints the median wall time of `map_at_k_from_scores`; the full throughput suite comes with benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from fathombatch.metrics import map_at_k_from_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=290)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    scores = rng.random((args.rows, args.classes), dtype=np.float32)
    truth = rng.random((args.rows, args.classes)) < 1.5 / args.classes
    map_at_k_from_scores(truth, scores)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        map_at_k_from_scores(truth, scores)
        times.append(time.perf_counter() - start)
    print(f"MAP@20 of {args.rows:,} x {args.classes} on {os.cpu_count()} cores: "
          f"median {statistics.median(times):.3f} s "
          f"over {args.repeats} runs (min {min(times):.3f}, max {max(times):.3f})")


if __name__ == "__main__":
    main()
