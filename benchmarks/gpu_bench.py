"""A short GPU benchmark (part of benchmarks/gpu_check.sh): decode-only, engine-only and end-to-end images/s at
batch sizes 64-512 on a 1920x1080 JPEG dive, DenseNet121 at 224, with whatever of DALI / TensorRT / nvJPEG is there.

Writes one json file; every part that cannot run says why instead of failing the whole check.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

FB = [sys.executable, "-m", "fathombatch"]


def sh(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-1500:]}")


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # "nvidia.dali" without any "nvidia" package
        return False


def save(results: dict[str, Any], out: Path) -> None:
    """Rewrite the json after every part, so a check cut off by its timeout keeps what it measured."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(out)


def attempt(results: dict[str, Any], key: str, fn: Any, out: Path) -> None:
    try:
        results[key] = fn()
    except Exception as exc:  # noqa: BLE001 - a part that cannot run is recorded, not fatal
        results[key] = {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:400],
                        "trace": traceback.format_exc()[-800:]}
    save(results, out)
    print(f"[{time.strftime('%H:%M:%S')}] {key}: {json.dumps(results[key])[:300]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/work/gpu"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-sizes", default="64,128,256,512")
    args = parser.parse_args()
    import torch

    from fathombatch.bench import BenchConfig, bench_decode, bench_e2e, bench_engine
    from fathombatch.gpu import gpu_info

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    have = {m: has_module(m) for m in ("nvidia.dali", "tensorrt")}
    results: dict[str, Any] = {"gpu": gpu_info(0).__dict__, "torch": torch.__version__, "cuda": torch.version.cuda,
                               "available": have, "batch_sizes": sizes, "complete": False}
    save(results, args.out)
    dive = work / "dive"
    if not (dive / "train.csv").is_file():
        sh([*FB, "synth", str(dive), "--images", str(args.images), "--size", "1920x1080", "--seed", "5", "--quiet"])
    run = work / "run"
    if not (run / "checkpoints" / "best.pt").is_file():
        # Throughput does not depend on the weights: one short epoch gives a real DenseNet121 to export.
        sh([*FB, "train", "--images", str(dive / "images"), "--labels", str(dive / "train.csv"),
            "--arch", "densenet121", "--img-size", "224", "--epochs", "1", "--batch-size", "64",
            "--out", str(run), "--quiet"])
    onnx, pt = work / "densenet121.onnx", work / "densenet121.pt"
    for fmt, path in (("onnx", onnx), ("pt", pt)):
        if not path.is_file():
            sh([*FB, "export", str(run), "--format", fmt, "--out", str(path)])
    engines: dict[str, Path] = {"torch-cuda": pt}
    if have["tensorrt"]:
        for precision in ("fp16", "fp32"):
            plan = work / f"densenet121-{precision}.plan"

            def build(plan: Path = plan, precision: str = precision) -> dict[str, Any]:
                from fathombatch.backends.trt_build import BuildConfig, build_engine

                start = time.perf_counter()
                build_engine(BuildConfig(onnx=onnx, out=plan, precision=precision, max_batch=max(sizes),
                                         overwrite=True))
                engines[f"trt-{precision}"] = plan
                return {"seconds": time.perf_counter() - start}

            attempt(results, f"build trt-{precision}", build, args.out)
    decoders = (["dali"] if have["nvidia.dali"] else []) + ["nvjpeg", "pil"]
    root = dive / "images"
    for bs in sizes:
        for d in decoders:
            attempt(results, f"decode {d} {bs}",
                    lambda d=d, bs=bs: bench_decode(BenchConfig(root=root, engine=onnx, repeats=2, device=0), d, bs),
                    args.out)
        for name, eng in engines.items():
            attempt(results, f"engine {name} {bs}",
                    lambda eng=eng, bs=bs: bench_engine(BenchConfig(root=root, engine=eng, repeats=2, device=0), bs),
                    args.out)
        best = engines.get("trt-fp16", pt)
        for d in decoders[:2]:
            attempt(results, f"e2e {d} {best.name} {bs}",
                    lambda d=d, bs=bs, best=best: bench_e2e(BenchConfig(root=root, engine=best, repeats=2, device=0),
                                                            d, bs),
                    args.out)
    results["complete"] = True
    save(results, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
