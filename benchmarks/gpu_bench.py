"""The GPU benchmark's parts, one per process (benchmarks/gpu_check.py runs each with its own timeout).

On a 1920x1080 JPEG dive it generates, with a DenseNet121 ``.pt`` engine at 224 px, batch 256:
``prepare`` (the dive and the engine), ``profile-nvjpeg`` (images/s of each step of an nvJPEG batch alone),
``decode-nvjpeg`` / ``decode-pil`` (decode + resize + normalise only),
``engine-fp16`` / ``engine-bf16`` (torch CUDA, channels-last, autocast; inputs already on the GPU), and
``e2e-nvjpeg`` / ``e2e-pil`` (the whole ``score`` path, fp16 engine, Parquet written). Each writes one json record.

    python benchmarks/gpu_bench.py --part prepare --record /tmp/prepare.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FB = [sys.executable, "-m", "fathombatch"]
BATCH = 256
UNIQUE = 128  # distinct 1080p images synthesised (synth is single-threaded: about 0.15 s an image on one core)
# Hard links to them, so each timed pass decodes FILES files. 8,192 rather than 1,024: at about 1,000 images/s a
# 1,024-file pass lasts one second, and the fixed cost of a scoring run (opening the engine, cuDNN's algorithm
# search, writing the table) then weighs on the end-to-end figure as much as the throughput does (measured on the
# H200: 800 images/s end to end over 1,024 files, 2026-11-30).
FILES = int(os.environ.get("FATHOMBATCH_GPU_BENCH_FILES", "8192"))


def sh(cmd: list[str]) -> None:
    import subprocess

    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-1500:]}")


def prepare(work: Path) -> dict[str, Any]:
    """Synthesise the dive, link it up to FILES files, train one short DenseNet121 epoch and export it as ``.pt``."""
    dive, dump, run, pt = work / "dive", work / "dump", work / "run", work / "densenet121.pt"
    if not (dive / "train.csv").is_file():
        sh([*FB, "synth", str(dive), "--count", str(UNIQUE), "--size", "1920x1080", "--seed", "5", "--quiet"])
    images = sorted((dive / "images").glob("*.jpg"))
    dump.mkdir(parents=True, exist_ok=True)
    for i in range(FILES):
        link = dump / f"{i:05d}.jpg"
        if not link.exists():
            os.link(images[i % len(images)], link)
    if not (run / "checkpoints" / "best.pt").is_file():
        # Throughput does not depend on the weights: one short epoch gives a real DenseNet121 to export.
        sh([*FB, "train", "--images", str(dive / "images"), "--labels", str(dive / "train.csv"), "--arch",
            "densenet121", "--img-size", "224", "--epochs", "1", "--batch-size", "32", "--out", str(run), "--quiet"])
    if not pt.is_file():
        sh([*FB, "export", str(run), "--format", "pt", "--out", str(pt)])
    return {"unique_images": len(images), "files": FILES, "size": "1920x1080", "engine": str(pt)}


def cuda_memory() -> dict[str, float]:
    import torch

    return {"cuda_max_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
            "cuda_max_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3)}


def engine_only(pt: Path, precision: str, batches: int = 20) -> dict[str, Any]:
    """Images/s of the torch engine alone on a batch already on the GPU (no host copy in the timing)."""
    import torch

    from fathombatch.backends import open_engine

    engine = open_engine(pt, device=0, precision=precision)
    spec = engine.manifest.input
    x = torch.randn(BATCH, 3, spec.height, spec.width, device="cuda")
    for _ in range(3):  # warm-up: cuDNN picks its algorithms
        engine.run(x)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        engine.run(x)  # returns host arrays, so each call ends synchronised
    seconds = time.perf_counter() - start
    return {"stage": "engine", "precision": precision, "channels_last": True, "batch_size": BATCH,
            "images": BATCH * batches, "images_per_s": BATCH * batches / seconds, "seconds": seconds,
            **cuda_memory()}


def profile_nvjpeg(dump: Path, pt: Path, batches: int = 6) -> dict[str, Any]:
    """Where a decoder batch's time goes: images/s of each step alone, each ended by a CUDA synchronise.

    Steps: reading the files (one thread), nvJPEG's call on the whole batch and in the parts the
    decoder uses, the resize done one call per image (the decoder before 2026-11-30) and grouped by shape (after), and
    the whole ``NvjpegDecoder.decode``.
    """
    import torch

    from fathombatch.backends import read_manifest, resolve_engine_path
    from fathombatch.decode.base import read_batch
    from fathombatch.decode.nvjpeg import NVJPEG_PART, NvjpegDecoder, resize_normalise

    spec = read_manifest(resolve_engine_path(pt)).input
    files = sorted(dump.glob("*.jpg"))[: BATCH * (batches + 1)]
    chunks = [files[i : i + BATCH] for i in range(0, len(files), BATCH)]
    mean = torch.tensor(spec.mean, device="cuda").view(1, 3, 1, 1) * 255.0
    std = torch.tensor(spec.std, device="cuda").view(1, 3, 1, 1) * 255.0
    threads = (os.cpu_count() or 1) + 1
    steps: dict[str, float] = {}

    def clock(name: str, fn: Any) -> Any:
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - start
        return out

    with NvjpegDecoder(spec, batch_size=BATCH, threads=threads, device=0) as dec:
        for n, chunk in enumerate(chunks):
            if n == 1:  # the first batch warms nvJPEG, the allocator and the pool up: not counted
                steps.clear()
            read = clock("read (one thread, as the decoder's reader)", lambda c=chunk: read_batch(c))[0]
            data = [torch.frombuffer(bytearray(f.data), dtype=torch.uint8) for _, f in read]
            imgs = clock("nvjpeg batched call", lambda d=data: dec.decode_jpegs(d))
            clock(f"nvjpeg, calls of {NVJPEG_PART}",
                  lambda d=data: [dec.decode_jpegs(d[i : i + NVJPEG_PART]) for i in range(0, len(d), NVJPEG_PART)])
            clock("resize, one call per image", lambda i=imgs: [resize_normalise([x], spec.size, mean, std) for x in i])
            clock("resize, grouped by shape", lambda i=imgs: resize_normalise(i, spec.size, mean, std))
            clock("NvjpegDecoder.decode", lambda c=chunk: dec.decode(c))
    images = BATCH * (len(chunks) - 1)
    return {"stage": "profile", "decoder": "nvjpeg", "batch_size": BATCH, "images": images, "threads": threads,
            "step_images_per_s": {k: round(images / v, 1) for k, v in steps.items()},
            "ms_per_batch": {k: round(1000 * v / (len(chunks) - 1), 1) for k, v in steps.items()}, **cuda_memory()}


def e2e(dump: Path, pt: Path, decoder: str) -> dict[str, Any]:
    """The whole scoring path through the library (the CLI may still refuse ``--decoder nvjpeg`` in this tree)."""
    from fathombatch.bench import peak_memory, timed
    from fathombatch.scoring import ScoreConfig, score_folder

    with tempfile.TemporaryDirectory(prefix="fb-gpu-e2e-") as scratch:
        cfg = ScoreConfig(root=dump, engine=pt, out=Path(scratch) / "scores.parquet", batch_size=BATCH,
                          decoder=decoder, device="cuda", torch_precision="fp16", overwrite=True)
        summaries: list[Any] = []
        with peak_memory() as mem:
            rate, seconds, rates = timed(lambda: summaries.append(score_folder(cfg)) or summaries[-1].files, 2)
    # Each side of the pipeline, busy and waiting, per run: set beside decode-only and engine-only, it says whether
    # the gap to the slower stage is one side slowed by sharing the process (cores, the GIL) or the rows' writing.
    stages = [s.stages.as_dict() for s in summaries[1:] if s.stages is not None]  # [0] is timed()'s warm-up
    return {"stage": "e2e", "decoder": decoder, "precision": "fp16", "batch_size": BATCH, "cores": os.cpu_count(),
            "images": FILES, "images_per_s": rate, "seconds": seconds, "runs": rates, "pipeline": stages, **mem,
            **cuda_memory()}


def run_part(part: str, work: Path) -> dict[str, Any]:
    if part == "prepare":
        return prepare(work)
    dump, pt = work / "dump", work / "densenet121.pt"
    if not pt.is_file():
        raise RuntimeError(f"{pt} is missing: the 'prepare' part did not finish")
    if part.startswith("decode-"):
        from fathombatch.bench import BenchConfig, bench_decode

        record = bench_decode(BenchConfig(root=dump, engine=pt, repeats=2, device=0), part[7:], BATCH)
        return {**record, **cuda_memory()}
    if part == "profile-nvjpeg":
        return profile_nvjpeg(dump, pt)
    if part.startswith("engine-"):
        return engine_only(pt, part[7:])
    return e2e(dump, pt, part[4:])


def main() -> None:
    parts = ("prepare", "profile-nvjpeg", "decode-nvjpeg", "decode-pil", "engine-fp16", "engine-bf16", "e2e-nvjpeg",
             "e2e-pil")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=parts, required=True)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/work/gpu"))
    parser.add_argument("--record", type=Path, required=True, help="json file for this part's record")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    record = run_part(args.part, args.work)
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps(record, default=str)[:600])


if __name__ == "__main__":
    main()
