"""Turn the suite's records into a plot and benchmarks/RESULTS.md (used by benchmarks/run.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

RUNTIME = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
#: The targets of issue 13, each checked on figures measured side by side in one run.
SPEEDUP_TARGET, INT8_TARGET, E2E_TARGET, DEFAULT_TARGET, MEMORY_TARGET = 4.5, 1.5, 0.85, 0.95, 1.2


def _engine_label(r: dict[str, Any]) -> str:
    computes = r.get("inference_precision", r["precision"])
    return f"{RUNTIME.get(r['runtime'], r['runtime'])} {r['precision']}" + (
        f" (runs {computes})" if computes != r["precision"] else "")


def write_plot(records: dict[str, Any], path: Path) -> None:
    """Images/s per stage against batch size (log scale), with the seed-style baseline as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for r in records["sweep"]:
        if r["stage"] == "decode":
            label = f"decode + resize ({r['decoder']})"
        elif r["stage"] == "engine":
            label = f"engine only: {_engine_label(r)}"
        else:
            label = "end to end: score defaults, OpenVINO int8"
        series.setdefault(label, []).append((r["batch_size"], r["images_per_s"]))
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for label, points in series.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.axhline(records["whole"]["baseline_images_per_s"], color="#d62728", linestyle="--",
               label="seed-style baseline (whole process)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("images per second")
    m = records["machine"]
    ax.set_title(f"DenseNet121 at 224 px, 1920x1080 JPEG dive; {m['cores']} cores, {m['cpu']}", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ok(value: float, target: float, higher: bool = True) -> str:
    met = value >= target if higher else value <= target
    return "met" if met else "**missed**"


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


def targets(records: dict[str, Any]) -> list[str]:
    w, eng, mem = records["whole"], records["engines"], records["memory"]
    variants = {r["variant"]: r for r in records["defaults"]["variants"]}
    default, best = variants["default"], max(variants.values(), key=lambda r: r["images_per_s"])
    ov8, ort32 = eng["openvino-int8"]["images_per_s"], eng["onnx-fp32"]["images_per_s"]
    acc = records["accuracy"]["openvino-int8"]
    drop = None if acc["val_map20_fp32_engine"] is None else acc["val_map20_fp32_engine"] - acc["val_map20_engine"]
    e2e_ratio = default["images_per_s"] / ov8
    default_ratio = default["images_per_s"] / best["images_per_s"]
    return [
        "| target | measured | |",
        "| --- | --- | --- |",
        f"| whole-process `fathombatch score DIR --engine {Path(w['command'].split(' --engine ')[1]).name}` "
        f"(no other flag) ≥ "
        f"{SPEEDUP_TARGET}× the seed-style pipeline | {w['speedup']:.2f}× ({w['score_images_per_s']:.1f} vs "
        f"{w['baseline_images_per_s']:.1f} images/s, {w['images']} 1080p JPEGs, imports and model loading included) "
        f"| {_ok(w['speedup'], SPEEDUP_TARGET)} |",
        f"| int8 OpenVINO engine-only ≥ {INT8_TARGET}× fp32 ONNX Runtime engine-only (batch 32) | {ov8 / ort32:.2f}× "
        f"({ov8:.1f} vs {ort32:.1f} images/s) | {_ok(ov8 / ort32, INT8_TARGET)} |",
        f"| end to end (`score` defaults) ≥ {E2E_TARGET}× engine-only (int8 OpenVINO, batch 32) | {e2e_ratio:.2f}× "
        f"({default['images_per_s']:.1f} vs {ov8:.1f} images/s) | {_ok(e2e_ratio, E2E_TARGET)} |",
        f"| held-out MAP@20 of the int8 engine within 0.005 of fp32 | {_fmt(drop, '+.4f')} drop "
        f"({_fmt(acc['val_map20_fp32_engine'])} → {_fmt(acc['val_map20_engine'])}; check {acc['precision_check']}) | "
        f"{'met' if drop is not None and drop <= 0.005 else '**missed**'} |",
        f"| `score` with no tuning flags within 5 % of the fastest configuration measured | {default_ratio:.2f} of "
        f"the fastest (`{best['variant']}`, {best['images_per_s']:.1f} images/s) | "
        f"{_ok(default_ratio, DEFAULT_TARGET)} |",
        f"| peak RSS scoring 20,000 small images ≤ {MEMORY_TARGET}× scoring 2,000 | {mem['ratio']:.2f}× | "
        f"{_ok(mem['ratio'], MEMORY_TARGET, False)} |",
    ]


def avx2_section(records: dict[str, Any]) -> list[str]:
    """The headline targets measured again in processes held to AVX2."""
    a = records.get("avx2")
    if not a:
        return []
    w = a["whole"]
    by = {(r["stage"], r.get("runtime"), r.get("precision")): r["images_per_s"] for r in a["records"]}
    ov8, ort32, ov32 = by[("engine", "openvino", "int8")], by[("engine", "onnxruntime", "fp32")], by[
        ("engine", "openvino", "fp32")]
    e2e = by[("e2e", None, None)]
    env = " ".join(f"{k}={v}" for k, v in a["env"].items())
    return [
        "## Held to AVX2",
        "",
        f"The same measurements in processes started with `{env}`: oneDNN (OpenVINO's CPU plugin, PyTorch's "
        "convolutions) and PyTorch's own kernels use AVX2 only, and OpenVINO gets no bf16 (fathombatch counts such a "
        "cap as a CPU without bf16). ONNX Runtime's kernels (MLAS) pick their instruction sets themselves and are "
        "not held by the cap, so its figure may flatter it and the int8 ratio is then a lower bound. This is a "
        "stand-in for an AVX2-only CPU, not one.",
        "",
        "| target | measured (held to AVX2) | |",
        "| --- | --- | --- |",
        f"| whole-process `score` ≥ {SPEEDUP_TARGET}× the seed-style pipeline | {w['speedup']:.2f}× "
        f"({w['score_images_per_s']:.1f} vs {w['baseline_images_per_s']:.1f} images/s) | "
        f"{_ok(w['speedup'], SPEEDUP_TARGET)} |",
        f"| int8 OpenVINO engine-only ≥ {INT8_TARGET}× fp32 ONNX Runtime (not held) | {ov8 / ort32:.2f}× ({ov8:.1f} vs "
        f"{ort32:.1f} images/s; OpenVINO fp32 {ov32:.1f}) | {_ok(ov8 / ort32, INT8_TARGET)} |",
        f"| end to end ≥ {E2E_TARGET}× engine-only | {e2e / ov8:.2f}× ({e2e:.1f} vs {ov8:.1f} images/s) | "
        f"{_ok(e2e / ov8, E2E_TARGET)} |",
        "",
    ]


def write_results_md(records: dict[str, Any], path: Path, plot: Path) -> None:
    m, w, mem, png = records["machine"], records["whole"], records["memory"], records["png_threads"]
    lines = [
        "# Throughput results",
        "",
        f"Measured by `make bench` (`benchmarks/run.py`) on {time.strftime('%Y-%m-%d')}. Every figure is the median of "
        f"{records['repeats']} timed runs after a warm-up; each ratio is measured in one run, side by side.",
        "",
        f"**Machine**: {m['cores']} cores, {m['cpu']} (instruction sets: {', '.join(m['isa']) or 'baseline x86-64'}), "
        f"GPU: {m['gpu']}, Python {m['python']}.",
        "",
        "## Targets",
        "",
        *targets(records),
        "",
        *avx2_section(records),
        "## Whole processes",
        "",
        f"`{w['command']}` (run in a scratch folder; nothing else on its command line) against "
        "`benchmarks/baseline_seed.py` on the same weights, alternated run by run after one warm-up round each:",
        "",
        "| pipeline | wall seconds per run | images/s (median) |",
        "| --- | --- | --- |",
        f"| seed-style baseline | {', '.join(f'{s:.1f}' for s in w['seconds']['baseline'])} | "
        f"{w['baseline_images_per_s']:.1f} |",
        f"| fathombatch score | {', '.join(f'{s:.1f}' for s in w['seconds']['score'])} | "
        f"{w['score_images_per_s']:.1f} |",
        "",
        "## Engines alone (batch 32, the runtime's default threads)",
        "",
        "| engine | images/s | × ONNX Runtime fp32 |",
        "| --- | --- | --- |",
    ]
    base = records["engines"]["onnx-fp32"]["images_per_s"]
    for r in records["engines"].values():
        lines.append(f"| {_engine_label(r)} | {r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f}× |")
    lines += ["", "## Accuracy of the reduced-precision engines", "",
              "Held-out MAP@20 recorded by each export on the synthetic run's held-out split (fp32 is the same "
              "weights in fp32, measured by the same runtime):", "",
              "| engine | fp32 | engine | drop | check | bf16 check (CPUs with bf16 units) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for key, a in records["accuracy"].items():
        drop = None if a["val_map20_fp32_engine"] is None else a["val_map20_fp32_engine"] - a["val_map20_engine"]
        lines.append(f"| {key} | {_fmt(a['val_map20_fp32_engine'])} | {_fmt(a['val_map20_engine'])} | "
                     f"{_fmt(drop, '+.4f')} | {a['precision_check'] or '—'} | {a['bf16_check'] or '—'} |")
    lines += ["", "## Defaults", "",
              f"`score` with no tuning flags (decoder `auto` = Pillow on the CPU, batch 32, "
              f"{records['defaults']['decode_threads_default']} decode threads, engine threads the runtime's default) "
              "against alternatives, int8 OpenVINO engine, alternated run by run:", "",
              "| configuration | images/s | runs |", "| --- | --- | --- |"]
    for r in records["defaults"]["variants"]:
        lines.append(f"| {r['variant']} | {r['images_per_s']:.1f} | {', '.join(f'{x:.1f}' for x in r['runs'])} |")
    lines += ["", "## Memory", "", "| images | peak RSS (whole `score` process) | wall time |", "| --- | --- | --- |"]
    for v in mem.values():
        if isinstance(v, dict):
            lines.append(f"| {v['images']:,} | {v['peak_rss_mb']:.0f} MiB | {v['seconds']:.1f} s |")
    lines += ["", "## PNG decoding (real size mix) by threads", "", "| decoder | 1 thread | 2 threads |",
              "| --- | --- | --- |"]
    for d in ("pil", "dali"):
        lines.append(f"| {d} | {png[f'{d}-1']['images_per_s']:.1f} images/s | "
                     f"{png[f'{d}-2']['images_per_s']:.1f} images/s |")
    lines += ["", "## Sweep", "", f"![throughput]({plot.relative_to(path.parent)})", "",
              "| stage | what | batch | images/s |", "| --- | --- | --- | --- |"]
    for r in records["sweep"]:
        what = _engine_label(r) if r["stage"] == "engine" else (r.get("variant") or r["decoder"])
        lines.append(f"| {r['stage']} | {what} | {r['batch_size']} | {r['images_per_s']:.1f} |")
    lines += ["", *video_section(path.parent / "results" / "video.json")]
    lines += ["", *gpu_section(path.parent / "results" / "gpu_check.json")]
    lines += ["", *ray_section(path.parent / "results" / "ray_vs_local.json")]
    lines += ["", "## Notes", "", *notes(records), ""]
    path.write_text("\n".join(lines) + "\n")


def video_section(result: Path) -> list[str]:
    """The dive-video stage (``benchmarks/run.py --only video``), or a line saying it has not run."""
    lines = ["## Dive video (1080p30 H.264 sampled every second)", ""]
    if not result.is_file():
        return [*lines, "Not measured: no run of the video stage is recorded here."]
    import json

    d = json.loads(result.read_text())
    m, v = d["machine"], d["video"]
    load = d.get("load_average_before")
    return [*lines,
            f"`benchmarks/run.py --only video` on {m['cores']} cores, {m['cpu']}"
            + (f" (1-minute load average {load[0]:.1f} before the run: the machine was shared)" if load else "")
            + f"; recorded in `results/video.json`. A {v['footage_s']:.0f} s synthetic dive "
            f"video, {v['width']}x{v['height']} at {v['fps']:g} fps, {v['codec']}, {v['bitrate_mbit_s']:.1f} Mbit/s, "
            f"x264's default keyframe interval; every pass decodes every frame with PyAV and resizes and normalises "
            f"each sampled frame to {v['input']}. Real ROV footage (often at higher bitrates) was not measured.",
            "",
            "| interval | sampled frames/s (median) | x real time | runs |",
            "| --- | --- | --- | --- |",
            f"| {v['interval_s']:g} s | {v['frames_per_s']:.2f} | {v['realtime']:.2f} | "
            f"{', '.join(f'{r:.2f}' for r in v['runs'])} |"]


def gpu_section(check: Path) -> list[str]:
    """The GPU check's figures (``benchmarks/gpu_check.sh`` on a lent GPU), or a line saying it has not run."""
    lines = ["## GPU (the check of `benchmarks/gpu_check.sh`)", ""]
    if not check.is_file():
        return [*lines, "Not measured: no run of the GPU check is recorded here."]
    import json

    d = json.loads(check.read_text())
    gpus = ", ".join(g["name"] for g in d["preflight"].get("gpus", [])) or "no GPU"
    mods = d["preflight"].get("modules", {})
    torch_v = mods.get("torch", {}).get("version", "?")
    parts = d["parts"]
    lines += [f"Run on {d['started'][:10]}: {gpus}, Python {d['preflight'].get('python', '?')}, torch {torch_v}, "
              f"CUDA {d['preflight'].get('cuda', '?')}; recorded in `results/{check.name}`. 1920x1080 JPEGs, "
              "batch 256, DenseNet121 `.pt` engine at 224 px.", "",
              "| part | status | images/s | memory |", "| --- | --- | --- | --- |"]
    for name, part in parts.items():
        r = part.get("result") or {}
        rate = f"{r['images_per_s']:.0f}" if isinstance(r.get("images_per_s"), int | float) else "—"
        memory = [f"RSS {r['peak_rss_mb']:.0f} MiB"] if "peak_rss_mb" in r else []
        memory += [f"CUDA {r['cuda_max_allocated_gib']:.2f} GiB"] if "cuda_max_allocated_gib" in r else []
        mem = ", ".join(memory) or "—"
        lines.append(f"| {name} | {part['status']} | {rate} | {mem} |")
    t = d.get("targets") or {}
    lines += ["", f"Target: {t.get('rule', 'end to end >= 0.85x the slower stage')}.", ""]
    for dec in ("nvjpeg", "pil"):
        if dec in t and "e2e_images_per_s" not in t[dec]:
            lines.append(f"- {dec}: not measured ({t[dec].get('reason', 'a part did not run')})")
        elif dec in t:
            x = t[dec]
            verdict = "met" if x["met"] else "**missed**"
            lines.append(f"- {dec}: end to end {x['e2e_images_per_s']:.0f} images/s vs slower stage "
                         f"{x['slower_stage_images_per_s']:.0f} → {x['ratio']:.2f}× — {verdict}")
    if t.get("anchors"):
        lines += ["", f"Anchors: {t['anchors']}."]
    return lines


def ray_section(result: Path) -> list[str]:
    """``--ray`` against a local run on this machine (``benchmarks/ray_vs_local.py``), or a line saying it has not
    run."""
    lines = ["## Ray vs local on one machine (`benchmarks/ray_vs_local.py`)", ""]
    if not result.is_file():
        return [*lines, "Not measured: no run of `benchmarks/ray_vs_local.py` is recorded here."]
    import json
    import statistics

    d = json.loads(result.read_text())
    local, ray = d["summary"]["local"], d["summary"]["ray"]
    load = d.get("load_average")
    lines += [f"`{Path(d['images']).parent.name}` ({local['images']} images), engine `{d['engine']}`, batch "
              f"{d['batch_size']}, {d['cores']} cores ({d.get('cpu_model', d['cpu'])}); median of {d['repeats']} "
              "interleaved repeats, wall time of the whole command; recorded in `results/ray_vs_local.json`"
              + (f"; load average {load[0]:.1f} before, {load[1]:.1f} after" if load else "") + ".", "",
              "| run | wall s | images/s |", "| --- | --- | --- |",
              f"| local, `--threads {d['cores']}` | {local['wall_s']:.1f} | {local['images_per_s_wall']:.1f} |",
              f"| `--ray --ray-workers {d['cores']} --cpus-per-worker 1` | {ray['wall_s']:.1f} | "
              f"{ray['images_per_s_wall']:.1f} |", "",
              f"Ray / local: {ray['images_per_s_wall'] / local['images_per_s_wall']:.2f}× (target ≥ 0.8×); "
              f"`ray.init` alone: median {statistics.median(d['ray_init_s']):.1f} s."]
    return lines


def notes(records: dict[str, Any]) -> list[str]:
    """What bounds the figures, derived from the measurements themselves."""
    m, eng = records["machine"], records["engines"]
    cores = m["cores"] or 1
    ov8 = eng["openvino-int8"]["images_per_s"]
    variants = {r["variant"]: r for r in records["defaults"]["variants"]}
    e2e = variants["default"]["images_per_s"]
    decode = max((r["images_per_s"] for r in records["sweep"] if r["stage"] == "decode" and r["decoder"] == "pil"),
                  default=0.0)
    out = []
    if decode:
        # Decoding and inference share the same cores: their core times per image add up.
        ceiling = 1.0 / (1.0 / ov8 + 1.0 / decode)
        out.append(
            f"- **End to end vs engine-only**: on {cores} cores decoding and inference share the CPU. Pillow needs "
            f"{1000 * cores / decode:.1f} ms of core time per 1080p frame (its best rate, {decode:.0f} images/s on "
            f"{cores} threads) and the int8 engine {1000 * cores / ov8:.1f} ms per image ({ov8:.1f} images/s on "
            f"{cores} threads), so end to end cannot pass {ceiling:.1f} images/s, {ceiling / ov8:.2f} of engine-only; "
            f"the defaults reach {e2e:.1f} images/s, {e2e / ceiling:.2f} of that ceiling. The faster the engine, the "
            "larger decoding's share: the ratio is a property of the core count, not of the pipeline's overlap.")
    isa = set(m["isa"])
    bf16 = bool(isa & {"avx512_bf16", "amx_bf16", "amx_tile"})
    vnni = bool(isa & {"avx512_vnni", "avx_vnni", "amx_tile"})
    out.append(
        f"- **This CPU** has {'' if vnni else 'no '}VNNI int8 dot-product instructions and {'' if bf16 else 'no '}bf16 "
        "units. " + ("OpenVINO therefore runs the float layers of both OpenVINO engines in bf16 here, because their "
                     "exports' held-out bf16 checks passed (see the accuracy table); on a CPU without bf16 units they "
                     "run in f32 and the OpenVINO fp32 engine is close to ONNX Runtime fp32. " if bf16 else "")
        + "Issue 13 reports DenseNet121 on an AVX2-only EPYC at about 26 images/s with ONNX Runtime fp32, 25.6 with "
          "OpenVINO fp32 and 43.0 with OpenVINO int8 (not re-measured here); the figures above hold for this machine.")
    if isa & {"avx512f", "amx_tile"}:
        out.append(
            "- **AVX2**: the targets are meant to hold on AVX2-only CPUs, and this machine has AVX-512; the section "
            "\"Held to AVX2\" is the closest this machine gets. A real AVX2 machine may differ (its caches, clocks "
            "and ONNX Runtime's kernels); `make bench` there settles it.")
    out.append(
        "- Figures measured minutes apart on this virtual machine drift by up to about 10 % (compare the sweep's "
        "end-to-end rows with the defaults table); that is why every ratio above comes from runs alternated side by "
        "side, and why the defaults are judged on the alternated table only.")
    runs = records["whole"]["seconds"]["baseline"]
    if len(runs) > 1:
        out.append(f"- The baseline's {len(runs)} runs took {', '.join(f'{r:.1f}' for r in runs)} s; the ratios "
                   "inherit that spread.")
    out.append("- The seed-style baseline decodes full-resolution JPEGs in 2 DataLoader workers that compete with "
               "PyTorch's threads for the same cores, as a user of the original study would have run it.")
    return out
