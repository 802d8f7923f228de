"""DALI's CPU video decoder or PyAV? Sampling a 1080p MJPEG clip every second both ways, side by side.

    .venv/bin/python benchmarks/video_dali.py [--seconds 20] [--repeats 3]

Writes a synthetic 1080p30 MJPEG Matroska clip under benchmarks/work/ (the synthetic dive's drifting organisms and
sensor noise; MJPEG because DALI's CPU backend decodes no H.264), then times, alternated:

* ``pyav``: :func:`fathombatch.decode.video.resized_frames` (PyAV decodes every frame; the sampled ones are resized
  and normalised to 224x224 with Pillow);
* ``dali``: :class:`fathombatch.decode.video_dali.DaliVideoDecoder` on the CPU (the frames are picked from the
  demuxed packets; DALI decodes only those, resizes and normalises them), batches of 32.

Both must return the same frame indices, times and ids (checked); the figure is sampled frames per second, median of
the repeats. Writes benchmarks/results/video_dali.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def clip(seconds: float) -> Path:
    from fathombatch.synth import SynthConfig, plan_image
    from fathombatch.synth_video import encode_video, render_frames

    path = HERE / "work" / f"dali-1080p-mjpeg-{seconds:g}s.mkv"
    if not path.is_file():
        plan = plan_image(SynthConfig(out=path.parent, images=1, seed=31, size=(1920, 1080)), 0, "clip", False)
        frames = render_frames(plan, int(seconds * 30), 30, np.random.default_rng(31))
        encode_video(path, frames, 30, (1920, 1080), codec="mjpeg", pix_fmt="yuvj420p", container_format="matroska")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from run import machine

    from fathombatch.decode.video import ResizedFrame, resized_frames
    from fathombatch.decode.video_dali import DaliVideoDecoder
    from fathombatch.preprocess import InputSpec

    spec = InputSpec()
    path = clip(args.seconds)
    dali = DaliVideoDecoder(spec, batch_size=32, threads=os.cpu_count())
    ways: dict[str, Callable[[], Iterator[ResizedFrame]]] = {
        "pyav": lambda: resized_frames(path, 1.0, spec), "dali": lambda: dali.frames(path, 1.0)}
    ids = {way: [r.frame.image_id for r in fn()] for way, fn in ways.items()}
    assert ids["pyav"] == ids["dali"] and not dali.fallbacks.reasons, "the two ways sampled other frames"
    rates: dict[str, list[float]] = {way: [] for way in ways}
    load = os.getloadavg()  # 1, 5 and 15 minutes, before the timed runs
    for _ in range(args.repeats):  # alternated, so drift of a shared machine hits both alike
        for way, fn in ways.items():
            start = time.perf_counter()
            n = sum(1 for _ in fn())
            rates[way].append(n / (time.perf_counter() - start))
    record = {"clip": path.name, "bytes": path.stat().st_size, "interval_s": 1.0, "samples": len(ids["pyav"]),
              **{f"{w}_frames_per_s": statistics.median(r) for w, r in rates.items()}, "runs": rates,
              "load_average_before": load}
    print(json.dumps({k: v for k, v in record.items() if k != "runs"}), flush=True)
    out = HERE / "results" / "video_dali.json"
    out.write_text(json.dumps({"machine": machine(), "seconds": args.seconds, "records": [record]}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
