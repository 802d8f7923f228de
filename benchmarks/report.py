"""Turn the suite's records into a plot and benchmarks/RESULTS.md (used by benchmarks/run.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def write_plot(records: dict[str, Any], path: Path) -> None:
    """Images/s per stage against batch size (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for r in records["sweep"]:
        if r["stage"] == "decode":
            label = f"decode + resize ({r['decoder']})"
        elif r["stage"] == "engine":
            label = f"engine only: {r['arch']} {r['precision']}"
        else:
            label = f"end to end ({r['decoder']})"
        series.setdefault(label, []).append((r["batch_size"], r["images_per_s"]))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, points in series.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.axhline(records["headline"]["baseline_images_per_s"], color="#d62728", linestyle="--",
               label="seed-style baseline (batch 32, 2 workers)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("images per second")
    ax.set_title("Throughput per stage, 1920x1080 JPEG dive, 224 px models")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ok(value: float, target: float, higher: bool = True) -> str:
    met = value >= target if higher else value <= target
    return "met" if met else "**missed**"


def write_results_md(records: dict[str, Any], path: Path, plot: Path) -> None:
    m, h, mem, acc = records["machine"], records["headline"], records["memory"], records["accuracy"]
    png = records["png_threads"]
    e2e = h["e2e"][h["best"]]
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
        "| target | measured | |",
        "| --- | --- | --- |",
        f"| end-to-end `score` ≥ 3.0× the seed-style baseline (DenseNet121, 224 px, 1080p JPEG) | "
        f"{h['speedup_vs_baseline']:.2f}× ({e2e['images_per_s']:.1f} vs {h['baseline_images_per_s']:.1f} images/s) | "
        f"{_ok(h['speedup_vs_baseline'], 3.0)} |",
        f"| end-to-end ≥ 0.8× engine-only at the same batch size (32) | {h['e2e_over_engine']:.2f}× "
        f"({e2e['images_per_s']:.1f} vs {h['engine_only']['images_per_s']:.1f} images/s) | "
        f"{_ok(h['e2e_over_engine'], 0.8)} |",
        f"| peak RSS scoring 20,000 small images ≤ 1.2× scoring 2,000 (ResNet18 at 64 px) | {mem['ratio']:.2f}× | "
        f"{_ok(mem['ratio'], 1.2, False)} |",
        f"| PNG decoding scales with threads (1 → 2 threads, Pillow) | "
        f"{png['pil-1']['images_per_s']:.1f} → {png['pil-2']['images_per_s']:.1f} images/s "
        f"({png['pil-2']['images_per_s'] / png['pil-1']['images_per_s']:.2f}×) | reported |",
        "",
        f"Fastest end-to-end configuration: `{Path(h['engine']).name}` with the `{h['best_decoder']}` decoder. All "
        "measured end to end at batch 32: "
        + ", ".join(f"{k} {v['images_per_s']:.1f} images/s" for k, v in h["e2e"].items()) + ".",
        "",
        "## Accuracy of the int8 engines",
        "",
        "Held-out MAP@20 on the synthetic benchmark's held-out split, fp32 ONNX vs int8 ONNX of the same weights "
        "(an int8 engine counts only if the difference is at most 0.005):",
        "",
        "| model | fp32 | int8 | difference | check |",
        "| --- | --- | --- | --- | --- |",
    ]
    for arch, a in acc.items():
        diff = "—" if a["fp32"] is None else f"{a['int8'] - a['fp32']:+.4f}"
        fp32 = "—" if a["fp32"] is None else f"{a['fp32']:.4f}"
        int8 = "—" if a["int8"] is None else f"{a['int8']:.4f}"
        lines.append(f"| {arch} | {fp32} | {int8} | {diff} | {a['check']} |")
    lines += [
        "",
        "## Memory",
        "",
        "| images | peak RSS (whole `score` process) | wall time |",
        "| --- | --- | --- |",
    ]
    for v in mem.values():
        if isinstance(v, dict):
            lines.append(f"| {v['images']:,} | {v['peak_rss_mb']:.0f} MiB | {v['seconds']:.1f} s |")
    lines += [
        "",
        "## PNG decoding (real size mix) by threads",
        "",
        "| decoder | 1 thread | 2 threads |",
        "| --- | --- | --- |",
    ]
    for d in ("pil", "dali"):
        lines.append(f"| {d} | {png[f'{d}-1']['images_per_s']:.1f} images/s | {png[f'{d}-2']['images_per_s']:.1f} images/s |")
    lines += ["", "## Sweep", "", f"![throughput]({plot.relative_to(path.parent)})", "",
              "| stage | what | batch | images/s | peak RSS of the benchmark process |", "| --- | --- | --- | --- | --- |"]
    for r in records["sweep"]:
        what = r.get("decoder") or f"{r.get('arch')} {r.get('precision')}"
        rss = f"{r['peak_rss_mb']:.0f} MiB" if r.get("peak_rss_mb") else "—"
        lines.append(f"| {r['stage']} | {what} | {r['batch_size']} | {r['images_per_s']:.1f} | {rss} |")
    lines += ["", "## Notes", "", *notes(records), ""]
    path.write_text("\n".join(lines) + "\n")


def notes(records: dict[str, Any]) -> list[str]:
    """Why a target was missed, from the measurements themselves."""
    h, m, acc = records["headline"], records["machine"], records["accuracy"]
    engine_rate = h["engine_only"]["images_per_s"]
    out = []
    cores = m["cores"] or 1
    decode = max((r["images_per_s"] for r in records["sweep"] if r["stage"] == "decode"), default=0.0)
    if h["speedup_vs_baseline"] < 3.0:
        need = 3.0 * h["baseline_images_per_s"] / engine_rate
        # Decoding and inference share the same cores: their core times per image add up.
        ceiling = 1.0 / (1.0 / engine_rate + 1.0 / decode) if decode else engine_rate
        bound = ceiling / h["baseline_images_per_s"]
        verdict = ("so 3× needs a faster engine, and the reduced-precision levers do not pay on this CPU (next note)"
                   if bound < 3.0 else "so 3× is within reach in principle; the rest is pipeline overhead")
        out.append(
            f"- **3× missed** ({h['speedup_vs_baseline']:.2f}×): the engine alone (ONNX Runtime, "
            f"`{Path(h['engine']).name}`) runs at {engine_rate:.1f} images/s, "
            f"{engine_rate / h['baseline_images_per_s']:.2f}× the whole seed-style pipeline, and end-to-end keeps "
            f"{h['e2e_over_engine']:.2f} of that. 3× would need end-to-end at {need:.2f} of the engine-only rate. "
            f"With the fastest decoder's core time ({decode:.0f} images/s on {cores} threads) added to inference's on "
            f"the same {cores} cores, the ceiling is {ceiling:.1f} images/s, {bound:.2f}× the baseline, {verdict}."
        )
    vnni = any(f in m["isa"] for f in ("avx512_vnni", "avx_vnni", "amx_tile"))
    int8 = [r for r in records["sweep"] if r["stage"] == "engine" and r.get("precision") == "int8"]
    fp32 = {r["batch_size"]: r["images_per_s"] for r in records["sweep"]
            if r["stage"] == "engine" and r.get("precision") == "fp32" and r.get("arch") == "densenet121"}
    if int8:
        gains = [r["images_per_s"] / fp32[r["batch_size"]] for r in int8 if r["batch_size"] in fp32]
        out.append(
            f"- **int8**: {'this CPU has' if vnni else 'this CPU lacks'} VNNI/AMX integer dot-product instructions "
            f"({', '.join(m['isa']) or 'none listed'}); the int8 DenseNet121 engine runs at "
            f"{min(gains):.2f}–{max(gains):.2f}× the fp32 one across batch sizes, and its held-out MAP@20 moved "
            f"{acc['densenet121']['int8'] - acc['densenet121']['fp32']:+.4f} (check: {acc['densenet121']['check']}), "
            "so it is not counted. bf16 needs AVX-512 BF16 or AMX, which this CPU lacks too."
        )
    if h["e2e_over_engine"] < 0.8:
        out.append(
            f"- **0.8× engine-only missed** ({h['e2e_over_engine']:.2f}×): decoding and writing overlap inference on "
            f"their own threads, but on {cores} cores they take CPU time from it: the fastest decoder needs about "
            f"{1000 * cores / decode:.0f} ms of core time per 1080p frame (its best rate, {decode:.0f} images/s on "
            f"{cores} threads), next to {1000 * cores / engine_rate:.0f} ms of core time of inference per image."
        )
    runs = h.get("baseline_runs") or []
    if len(runs) > 1:
        out.append(f"- The baseline's {len(runs)} timed runs: {', '.join(f'{r:.2f}' for r in runs)} images/s; the "
                   "ratios above inherit that spread, so a re-run can move them by "
                   "a few tenths.")
    out.append("- The seed-style baseline decodes full-resolution JPEGs in 2 DataLoader workers that compete with "
               "PyTorch's 2 threads for the same 2 cores, as a user of the original study would have run it.")
    return out
