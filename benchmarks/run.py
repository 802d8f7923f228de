"""The throughput suite: fathombatch measured side by side with the seed-style pipeline, on synthetic dives.

    make bench                      # or: .venv/bin/python benchmarks/run.py [--quick]

Steps (everything under benchmarks/work/, git-ignored; trained models and exports are reused when present):

1. Data, made by ``fathombatch synth``: a JPEG dive of 1920x1080 frames, a PNG dive at the real mix of sizes, a
   training dive, and 2,000 / 20,000 small frames for the memory check.
2. Models: DenseNet121 at 224 px, trained briefly with fathombatch, exported as ``.pt`` (for the baseline), fp32 and
   int8 ONNX (ONNX Runtime static quantisation) and fp32 and int8 OpenVINO (NNCF with accuracy control); each int8
   export records its held-out MAP@20 beside fp32's.
3. Measurements, each ratio taken in one run, side by side; every figure is the median of repeated runs:
   * whole processes, alternated: ``fathombatch score DIR --engine densenet121-int8.xml`` with no other flag vs
     ``benchmarks/baseline_seed.py`` (same weights, same JPEG dive; imports and model loading included in both);
   * the four engines alone (ONNX Runtime and OpenVINO, fp32 and int8) at batch 32;
   * ``score``'s default configuration against alternatives (decoder, decode threads, batch size), alternated run
     by run, and against the int8 engine alone;
   * peak RSS scoring 20,000 vs 2,000 small images (separate processes);
   * PNG decoding with 1 vs 2 threads;
   * a sweep of decode / engine / end-to-end throughput over batch sizes for the plot.
4. ``benchmarks/results/*.json``, ``benchmarks/results/throughput-*.png`` and ``benchmarks/RESULTS.md``.
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


EXPORTS = {  # key: (--format, --precision, file suffix)
    "pt-fp32": ("pt", "fp32", ".pt"),
    "onnx-fp32": ("onnx", "fp32", ".onnx"),
    "onnx-int8": ("onnx", "int8", "-int8.onnx"),
    "openvino-fp32": ("openvino", "fp32", ".xml"),
    "openvino-int8": ("openvino", "int8", "-int8.xml"),
}


def model(arch: str, train_dive: Path, epochs: int, size: int = 224, keys: tuple[str, ...] = tuple(EXPORTS)
          ) -> dict[str, Path]:
    """Train (once) and export an architecture; returns its engines by key of :data:`EXPORTS`."""
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
    for key in keys:
        fmt, precision, suffix = EXPORTS[key]
        path = WORK / "engines" / f"{tag}{suffix}"
        if not Path(str(path) + ".json").is_file():
            say(f"export {path.name}")
            sh([*FB, "export", str(run), "--format", fmt, "--precision", precision, "--out", str(path), "--overwrite"])
        engines[key] = path
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


#: Holds oneDNN (OpenVINO's CPU plugin and PyTorch's convolutions) and PyTorch's own kernels to AVX2: the suite's
#: stand-in for an AVX2-only CPU on a machine that has more. ONNX Runtime's MLAS picks its kernels itself.
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def whole_processes(images: Path, int8: Path, pt: Path, repeats: int, env: dict[str, str] | None = None
                    ) -> dict[str, Any]:
    """Wall time of whole processes, alternated: ``fathombatch score DIR --engine INT8`` exactly as a user types it
    (run in a scratch folder, so its default ``--out scores.parquet`` lands there) and the seed-style script."""
    scratch = WORK / "whole"
    scratch.mkdir(exist_ok=True)
    console = Path(sys.executable).with_name("fathombatch")
    score = [str(console) if console.is_file() else FB[0], *([] if console.is_file() else FB[1:]),
             "score", str(images), "--engine", str(int8)]
    baseline = [sys.executable, str(HERE / "baseline_seed.py"), str(images), "--engine", str(pt), "--out",
                str(scratch / "baseline.csv")]
    seconds: dict[str, list[float]] = {"baseline": [], "score": []}
    for round_ in range(repeats + 1):  # round 0 warms the page cache and the import caches of both
        for name, cmd in (("baseline", baseline), ("score", score)):
            for f in ("scores.parquet", "baseline.csv"):
                (scratch / f).unlink(missing_ok=True)
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=scratch, capture_output=True, text=True, check=False,
                                  env={**os.environ, **(env or {})})
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
            if round_:
                seconds[name].append(elapsed)
    n = sum(1 for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    med = {k: statistics.median(v) for k, v in seconds.items()}
    return {"command": " ".join(["fathombatch", *score[score.index("score"):]]), "images": n, "seconds": seconds,
            "baseline_images_per_s": n / med["baseline"], "score_images_per_s": n / med["score"],
            "speedup": med["baseline"] / med["score"]}


def avx2_emulation(images: Path, dn: dict[str, Path], repeats: int) -> dict[str, Any]:
    """The headline ratios again in processes held to AVX2 (:data:`AVX2_ENV`)."""
    out = WORK / "avx2.json"
    engines = [str(dn[k]) for k in ("onnx-fp32", "openvino-fp32", "openvino-int8")]
    env = {**os.environ, **AVX2_ENV}
    records = []
    for stage, args in (("engine", [a for e in engines for a in ("--engine", e)]), ("e2e", ["--engine", engines[-1]])):
        cmd = [*FB, "bench", stage, str(images), *args, "--batch-sizes", "32", "--decoders", "pil", "--repeats",
               str(repeats), "--json", str(out), "--overwrite"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"command failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
        records += json.loads(out.read_text())
    whole = whole_processes(images, dn["openvino-int8"], dn["pt-fp32"], repeats, env=AVX2_ENV)
    return {"env": AVX2_ENV, "whole": whole, "records": records}


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

    from fathombatch.bench import BenchConfig, Variant, bench_decode, bench_e2e_variants, bench_engine
    from fathombatch.scoring import decode_threads

    jpeg = synth(f"jpeg-1080p-{n_jpeg}", "--count", str(n_jpeg), "--seed", "21", "--size", "1920x1080")
    png = synth(f"png-mix-{n_png}", "--count", str(n_png), "--seed", "22", "--format", "png")
    train_dive = synth(f"train-{n_train}", "--count", str(n_train), "--seed", "23", "--size", "640x360",
                       "--box-scale", "2.5")
    small = [synth(f"small-{n}", "--count", str(n), "--seed", "24", "--size", "64x48") for n in n_small]
    dn = model("densenet121", train_dive, epochs)
    tiny = model("resnet18", train_dive, 1, size=64, keys=("openvino-fp32",))["openvino-fp32"]  # memory check
    records: dict[str, Any] = {"machine": machine(), "quick": args.quick, "repeats": repeats}
    on_jpeg = lambda engine, **kw: BenchConfig(root=jpeg / "images", engine=engine, repeats=repeats, **kw)  # noqa: E731

    # 1. Accuracy of the int8 engines (recorded at export on the held-out split).
    records["accuracy"] = {}
    for key in ("onnx-int8", "openvino-int8", "openvino-fp32"):
        m = manifest_metrics(dn[key])
        records["accuracy"][key] = {k: m.get(k) for k in ("val_map20_fp32_engine", "val_map20_engine",
                                                          "precision_check", "bf16_check", "val_map20_bf16")}
    say(f"accuracy: {records['accuracy']}")

    # 2. Headline: whole processes, fathombatch's defaults with the int8 OpenVINO engine vs the seed-style script.
    records["whole"] = whole_processes(jpeg / "images", dn["openvino-int8"], dn["pt-fp32"], repeats)
    say(f"whole processes: {records['whole']['speedup']:.2f}x ({records['whole']['score_images_per_s']:.1f} vs "
        f"{records['whole']['baseline_images_per_s']:.1f} images/s)")

    # 2b. The same, and the engines alone, held to AVX2.
    records["avx2"] = avx2_emulation(jpeg / "images", dn, repeats)
    say(f"AVX2: {records['avx2']['whole']['speedup']:.2f}x; " + ", ".join(
        f"{r['stage']} {r.get('runtime', '')} {r.get('precision', '')} {r['images_per_s']:.1f}/s"
        for r in records["avx2"]["records"]))

    # 3. The engines alone, side by side, at batch 32.
    records["engines"] = {k: bench_engine(on_jpeg(dn[k]), 32)
                          for k in ("onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-int8")}
    say("engines: " + ", ".join(f"{k} {v['images_per_s']:.1f}/s" for k, v in records["engines"].items()))

    # 4. score's defaults against alternatives, alternated run by run, with the int8 OpenVINO engine.
    cores = os.cpu_count() or 1
    variants = [Variant("default"), Variant(f"pil, {cores} decode threads", decode_threads=cores),
                Variant("pil, batch 16", batch_size=16), Variant("pil, batch 64", batch_size=64),
                Variant("dali", decoder="dali")]
    records["defaults"] = {"decode_threads_default": decode_threads(None),
                           "variants": bench_e2e_variants(on_jpeg(dn["openvino-int8"]), variants)}
    say("variants: " + ", ".join(f"{r['variant']} {r['images_per_s']:.1f}/s" for r in records["defaults"]["variants"]))

    # 5. Memory: peak RSS of whole score processes, 20,000 vs 2,000 small images.
    mem = {}
    for root in small:
        rss, seconds = peak_rss_of_score(root / "images", tiny, WORK / "mem.parquet")
        mem[root.name] = {"peak_rss_mb": rss, "seconds": seconds, "images": int(root.name.split("-")[1])}
    records["memory"] = {**mem, "ratio": mem[small[1].name]["peak_rss_mb"] / mem[small[0].name]["peak_rss_mb"]}
    say(f"memory: {records['memory']}")

    # 6. PNG decoding, 1 vs 2 threads.
    png_cfg = lambda t: BenchConfig(root=png / "images", engine=dn["onnx-fp32"], repeats=repeats, threads=t)  # noqa: E731
    records["png_threads"] = {f"{d}-{t}": bench_decode(png_cfg(t), d, 32) for d in ("pil", "dali") for t in (1, 2)}
    say("png threads: " + ", ".join(f"{k} {v['images_per_s']:.1f}/s" for k, v in records["png_threads"].items()))

    # 7. Sweep for the plot.
    sweep = []
    for bs in ((8, 32) if args.quick else (8, 16, 32, 64)):
        for d in ("pil", "dali"):
            sweep.append(bench_decode(on_jpeg(dn["openvino-int8"]), d, bs))
        for key in ("onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-int8"):
            sweep.append(bench_engine(on_jpeg(dn[key]), bs))
        sweep += bench_e2e_variants(on_jpeg(dn["openvino-int8"]), [Variant("default", batch_size=bs)])
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
