"""Seek or decode through? Sampling a 1080p H.264 clip every N seconds both ways, on one machine, side by side.

    .venv/bin/python benchmarks/video_seek.py [--seconds 30] [--repeats 3]

Writes two synthetic 1080p30 clips under benchmarks/work/ (x264's default keyframe interval of 250 frames, and one
keyframe a second), then times, for sampling intervals of 1 s and 10 s:

* ``decode``: :func:`fathombatch.decode.video.sample_frames`, which decodes every frame;
* ``seek``: for each multiple of the interval, ``container.seek`` to the keyframe at or before it, then decode up to
  the first frame at or after it (the same rule).

Both must return the same timestamps (checked); the figure is sampled frames per second, median of the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def clip(name: str, seconds: float, options: dict[str, str]) -> Path:
    from fathombatch.synth import SynthConfig, plan_image
    from fathombatch.synth_video import encode_h264, render_frames

    path = HERE / "work" / f"{name}.mp4"
    if not path.is_file():
        plan = plan_image(SynthConfig(out=path.parent, images=1, seed=31, size=(1920, 1080)), 0, name, False)
        frames = render_frames(plan, int(seconds * 30), 30, np.random.default_rng(31))
        encode_h264(path, frames, 30, (1920, 1080), options)
    return path


def by_decoding(path: Path, interval: float) -> list[float]:
    from fathombatch.decode.video import sample_frames

    return [f.timestamp_s for f in sample_frames(path, interval) if f.timestamp_s is not None and f.ok]


def by_seeking(path: Path, interval: float) -> list[float]:
    out: list[float] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base or Fraction(1)
        end = float(container.duration or 0) / 1e6
        k = 0
        while k * interval < end:
            target = Fraction(k * interval).limit_denominator(1000)
            container.seek(int(target / tb), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts * tb >= target:
                    frame.to_ndarray(format="rgb24")
                    when = frame.pts * tb
                    out.append(float(when))
                    k = int(when * 1000) // int(interval * 1000) + 1  # next window, as the sampler's rule
                    break
            else:
                break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from run import machine

    clips = {"gop250": clip(f"seek-1080p-gop250-{args.seconds:g}s", args.seconds, {}),
             "gop30": clip(f"seek-1080p-gop30-{args.seconds:g}s", args.seconds, {"g": "30"})}
    records = []
    for gop, path in clips.items():
        for interval in (1.0, 10.0):
            expected = by_decoding(path, interval)
            assert by_seeking(path, interval) == expected, f"seeking sampled other frames ({gop}, {interval} s)"
            rates: dict[str, list[float]] = {"decode": [], "seek": []}
            for _ in range(args.repeats):  # alternated, so drift of a shared machine hits both alike
                for way, fn in (("decode", by_decoding), ("seek", by_seeking)):
                    start = time.perf_counter()
                    n = len(fn(path, interval))
                    rates[way].append(n / (time.perf_counter() - start))
            rec = {"clip": gop, "interval_s": interval, "samples": len(expected),
                   **{f"{w}_frames_per_s": statistics.median(r) for w, r in rates.items()}, "runs": rates}
            print(json.dumps({k: v for k, v in rec.items() if k != "runs"}), flush=True)
            records.append(rec)
    out = HERE / "results" / "video_seek.json"
    out.write_text(json.dumps({"machine": machine(), "seconds": args.seconds, "records": records}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
