"""The throughput suite: fathombatch measured side by side with the seed-style pipeline, on synthetic dives.

    make bench                      # or: .venv/bin/python benchmarks/run.py [--quick]

Steps (everything under benchmarks/work/, git-ignored; trained models are reused when present):

1. Data, made by ``fathombatch synth``: a JPEG dive of 1920x1080 frames, a PNG dive at the real mix of sizes, a
   training dive, and 2,000 / 20,000 small frames for the memory check.
2. Models: DenseNet121 and ResNet18 at 224 px, trained briefly with fathombatch, exported as ``.pt`` (for the
   baseline), fp32 ONNX and int8 ONNX (static quantisation; its held-out MAP@20 is checked against fp32).
3. Measurements, each ratio taken in one run, side by side; every figure is the median of repeated runs:
   * end-to-end ``score`` vs ``benchmarks/baseline_seed.py`` (same weights, same JPEG dive);
   * end-to-end vs engine-only at the same batch size;
   * peak RSS scoring 20,000 vs 2,000 small images (separate processes);
   * PNG decoding with 1 vs 2 threads;
   * a sweep of decode / engine / end-to-end throughput over batch sizes for the plot.
4. ``benchmarks/results/*.json``, ``benchmarks/results/throughput.png`` and ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
RESULTS = HERE / "results"
FB = [sys.executable, "-m", "fathombatch"]
sys.path.insert(0, str(HERE))


def sh(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc.stdout


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def synth(name: str, *args: str) -> Path:
    out = WORK / name
    if not (out / "train.csv").is_file():
        say(f"synth {name}")
        sh([*FB, "synth", str(out), "--quiet", *args])
    return out


def model(arch: str, train_dive: Path, epochs: int, size: int = 224) -> dict[str, Path]:
    """Train (once) and export an architecture; returns its engines (.pt, fp32 ONNX, int8 ONNX)."""
    tag = f"{arch}-{size}-{train_dive.name}-e{epochs}"  # a quick run's models are never reused by a full one
    run = WORK / "runs" / tag
    if not (run / "checkpoints" / "best.pt").is_file():
        say(f"train {arch} at {size} px ({epochs} epochs)")
        if run.exists():
            import shutil

            shutil.rmtree(run)
        sh([*FB, "train", "--preset", "densenet121-plus", "--arch", arch, "--no-pretrained", "--images",
            str(train_dive / "images"), "--labels", str(train_dive / "train.csv"), "--out", str(run), "--img-size",
            str(size), "--epochs", str(epochs), "--early-stop", "0", "--quiet"])
    engines = {}
    for fmt, precision, suffix in (("pt", "fp32", ".pt"), ("onnx", "fp32", ".onnx"), ("onnx", "int8", "-int8.onnx")):
        path = WORK / "engines" / f"{tag}{suffix}"
        if not path.is_file():
            say(f"export {path.name}")
            sh([*FB, "export", str(run), "--format", fmt, "--precision", precision, "--out", str(path), "--overwrite"])
        engines[f"{fmt}-{precision}"] = path
    return engines


def manifest_metrics(engine: Path) -> dict[str, Any]:
    return json.loads(Path(str(engine) + ".json").read_text())["metrics"]


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_of_score(root: Path, engine: Path, out: Path) -> tuple[float, float]:
    """Run `fathombatch score` in its own process; return (its peak RSS in MiB, seconds).

    The peak is the child's own high-water mark (VmHWM), polled until it exits. (``ru_maxrss`` of a child is useless
    here: Linux carries the parent's resident size at fork into the child's maximum, and this parent holds models.)
    """
    cmd = [*FB, "score", str(root), "--engine", str(engine), "--out", str(out), "--overwrite", "--quiet"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    while proc.poll() is None:
        hwm = _vm_hwm_mb(proc.pid)
        if hwm is not None:
            peak = max(peak, hwm)
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"score failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return peak, seconds


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "avx512_bf16") if f" {f}" in flags]
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "isa": isa, "gpu": gpu, "python": platform.python_version()}


def median_of(fn: Any, repeats: int) -> tuple[float, list[float]]:
    values = [fn() for _ in range(repeats)]
    return statistics.median(values), values


def main() -> None:
    parser = argparse.ArgumentParser(description="fathombatch throughput suite")
    parser.add_argument("--quick", action="store_true", help="small dives and one repeat: a smoke test of the suite")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from results/full.json")
    args = parser.parse_args()
    if args.report_only:
        from report import write_plot, write_results_md

        records = json.loads((RESULTS / "full.json").read_text())
        write_plot(records, RESULTS / "throughput-full.png")
        write_results_md(records, HERE / "RESULTS.md", RESULTS / "throughput-full.png")
        return
    repeats = 1 if args.quick else args.repeats
    n_jpeg, n_png, n_train, epochs = (48, 48, 120, 1) if args.quick else (384, 256, 600, 3)
    n_small = (200, 2000) if args.quick else (2000, 20000)
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)

    from baseline_seed import run_baseline

    from fathombatch.bench import BenchConfig, bench_decode, bench_e2e, bench_engine

    jpeg = synth(f"jpeg-1080p-{n_jpeg}", "--images", str(n_jpeg), "--seed", "21", "--size", "1920x1080")
    png = synth(f"png-mix-{n_png}", "--images", str(n_png), "--seed", "22", "--format", "png")
    train_dive = synth(f"train-{n_train}", "--images", str(n_train), "--seed", "23", "--size", "640x360",
                       "--box-scale", "2.5")
    small = [synth(f"small-{n}", "--images", str(n), "--seed", "24", "--size", "64x48") for n in n_small]
    engines = {arch: model(arch, train_dive, epochs) for arch in ("densenet121", "resnet18")}
    tiny = model("resnet18", train_dive, 1, size=64)["onnx-fp32"]  # the memory check scores 20,000 images
    records: dict[str, Any] = {"machine": machine(), "quick": args.quick, "repeats": repeats}

    # 1. Accuracy of the reduced-precision engines (recorded at export on the held-out split).
    accuracy = {}
    for arch, eng in engines.items():
        m = manifest_metrics(eng["onnx-int8"])
        accuracy[arch] = {"fp32": m.get("val_map20_fp32_engine"), "int8": m.get("val_map20_engine"),
                          "check": m.get("precision_check")}
    records["accuracy"] = accuracy
    say(f"accuracy: {accuracy}")

    # 2. Headline: end-to-end vs the seed-style baseline, DenseNet121 at 224 on the 1080p JPEG dive. Every engine
    #    that passed its accuracy check is measured end to end; the fastest counts.
    dn = engines["densenet121"]
    candidates = {"fp32": dn["onnx-fp32"]}
    if accuracy["densenet121"]["check"] == "passed":
        candidates["int8"] = dn["onnx-int8"]
    base = median_of(lambda: run_baseline(jpeg / "images", dn["pt-fp32"])["images_per_s"], repeats)
    e2e = {f"{p}-{d}": bench_e2e(BenchConfig(root=jpeg / "images", engine=eng, repeats=repeats), d, 32)
           for p, eng in candidates.items() for d in ("pil", "dali")}
    best_key = max(e2e, key=lambda k: e2e[k]["images_per_s"])
    best_precision, best_decoder = best_key.split("-")
    best = candidates[best_precision]
    engine_only = bench_engine(BenchConfig(root=jpeg / "images", engine=best, repeats=repeats), 32)
    records["headline"] = {
        "baseline_images_per_s": base[0], "baseline_runs": base[1],
        "engine": str(best), "e2e": e2e, "engine_only": engine_only,
        "speedup_vs_baseline": e2e[best_key]["images_per_s"] / base[0],
        "e2e_over_engine": e2e[best_key]["images_per_s"] / engine_only["images_per_s"],
        "best": best_key, "best_decoder": best_decoder,
    }
    say(f"headline: {json.dumps({k: v for k, v in records['headline'].items() if not isinstance(v, dict)})}")

    # 3. Memory: peak RSS of whole score processes, 20,000 vs 2,000 small images.
    mem = {}
    for root in small:
        rss, seconds = peak_rss_of_score(root / "images", tiny, WORK / "mem.parquet")
        mem[root.name] = {"peak_rss_mb": rss, "seconds": seconds, "images": int(root.name.split("-")[1])}
    records["memory"] = {**mem, "ratio": mem[small[1].name]["peak_rss_mb"] / mem[small[0].name]["peak_rss_mb"]}
    say(f"memory: {records['memory']}")

    # 4. PNG decoding, 1 vs 2 threads.
    png_cfg = lambda t: BenchConfig(root=png / "images", engine=dn["onnx-fp32"], repeats=repeats, threads=t)  # noqa: E731
    records["png_threads"] = {f"{d}-{t}": bench_decode(png_cfg(t), d, 32) for d in ("pil", "dali") for t in (1, 2)}
    say("png threads: " + ", ".join(f"{k} {v['images_per_s']:.1f}/s" for k, v in records["png_threads"].items()))

    # 5. Sweep for the plot.
    sweep = []
    for bs in ((8, 32) if args.quick else (8, 16, 32, 64)):
        for d in ("pil", "dali"):
            sweep.append(bench_decode(BenchConfig(root=jpeg / "images", engine=best, repeats=repeats), d, bs))
        for name in ("onnx-fp32", "onnx-int8"):
            sweep.append(bench_engine(BenchConfig(root=jpeg / "images", engine=dn[name], repeats=repeats), bs))
        sweep.append(bench_engine(BenchConfig(root=jpeg / "images", engine=engines["resnet18"]["onnx-fp32"],
                                              repeats=repeats), bs))
        sweep.append(bench_e2e(BenchConfig(root=jpeg / "images", engine=best, repeats=repeats), best_decoder, bs))
    records["sweep"] = sweep

    name = "quick" if args.quick else "full"
    (RESULTS / f"{name}.json").write_text(json.dumps(records, indent=2, default=str) + "\n")
    from report import write_plot, write_results_md

    write_plot(records, RESULTS / f"throughput-{name}.png")
    if not args.quick:
        write_results_md(records, HERE / "RESULTS.md", RESULTS / f"throughput-{name}.png")
    say(f"done: {RESULTS / f'{name}.json'}")


if __name__ == "__main__":
    main()
