"""The one-shot GPU check behind ``bash benchmarks/gpu_check.sh``: install the wheelhouse offline, write a preflight,
then run the GPU-marked tests and the GPU benchmark's parts, each in its own process with its own timeout.

Standard library only: it runs on the GPU image before anything is installed. ``gpu_check.json`` is rewritten after
every part, so a part that fails, hangs or is cut off never loses the others. Exit status 0 whenever the check itself
ran to the end (what passed or failed is in the json); on a machine without a GPU every part is ``skipped``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parents[1]
WHY_MISSING = {
    "nvidia.dali": "not on the GPU image, and DALI's wheel is far over the 64 MiB a run can carry",
    "tensorrt": "not on the GPU image, and TensorRT's wheels are far over the 64 MiB a run can carry",
    "onnx": "left out of wheelhouse/ to fit 60 MiB (benchmarks/gpu-wheels.txt): no ONNX export or TensorRT build",
    "onnxscript": "left out of wheelhouse/ to fit 60 MiB (benchmarks/gpu-wheels.txt): no ONNX export",
}
WHEELHOUSE_HINT = "expected from wheelhouse/: run `make gpu-wheels` where the package registry is, and carry wheelhouse"
MODULES = ("fathombatch", "torch", "torchvision", "numpy", "PIL", "pyarrow", "polars", "iterstrat", "pycocotools",
           "imagehash", "pywt", "pytest", "pytest_timeout", "onnxruntime", "onnx", "onnxscript", "nvidia.dali",
           "tensorrt")
# Run in a child process: a CUDA initialisation that hangs or crashes costs the preflight, not the check.
PREFLIGHT = r"""
import importlib, json, sys
info = {"python": sys.version.split()[0], "modules": {}}
for name in sys.argv[1].split(","):
    try:
        mod = importlib.import_module(name)
        info["modules"][name] = {"present": True, "version": str(getattr(mod, "__version__", "?"))}
    except Exception as exc:
        info["modules"][name] = {"present": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
try:
    import torch
    info.update(torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                cuda_available=torch.cuda.is_available())
    info["gpus"] = [{"name": p.name, "compute_capability": f"{p.major}.{p.minor}",
                     "memory_gib": round(p.total_memory / 2**30, 1)}
                    for p in map(torch.cuda.get_device_properties, range(torch.cuda.device_count()))]
    if info["cuda_available"]:
        import torchvision.io as tio
        try:
            jpeg = tio.encode_jpeg(torch.zeros(3, 16, 16, dtype=torch.uint8))
            info["nvjpeg"] = {"ok": tuple(tio.decode_jpeg(jpeg, device="cuda").shape) == (3, 16, 16)}
        except Exception as exc:
            info["nvjpeg"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
except Exception as exc:
    info.update(cuda_available=False, torch_error=f"{type(exc).__name__}: {exc}"[:300])
print(json.dumps(info))
"""


@dataclass(frozen=True)
class Part:
    """One step after the preflight: a command line run from the repository root, at most ``timeout_s`` seconds."""

    name: str
    argv: tuple[str, ...]
    timeout_s: int


def parts(py: str, dest: Path) -> list[Part]:
    """The GPU-marked tests, then the benchmark's parts in the order they depend on each other."""
    marked = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                    if any(m in p.read_text() for m in ("mark.gpu", "mark.dali_gpu", "mark.trt")))
    tests = (py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "gpu or dali_gpu or trt",
             "--junitxml", str(dest / "gpu_tests.xml"), *marked)
    bench = [Part(f"bench {p}", (py, "benchmarks/gpu_bench.py", "--part", p, "--record",
                                 str(dest / "gpu_check_logs" / f"{p}.json")), t)
             for p, t in (("prepare", 150), ("profile-nvjpeg", 60), ("decode-nvjpeg", 60), ("decode-pil", 60),
                          ("engine-fp16", 60), ("engine-bf16", 60), ("e2e-nvjpeg", 90), ("e2e-pil", 90))]
    return [Part("gpu tests", tests, 170), *bench]


def save(results: dict[str, Any], out: Path) -> None:
    """Write the json under a temporary name and rename it, so a reader never sees half a file."""
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(out)


def run(argv: tuple[str, ...] | list[str], env: dict[str, str], timeout_s: float, log: Path) -> dict[str, Any]:
    """Run one command in its own process group (a timeout kills the workers it spawned too); log its output."""
    start = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.Popen(list(argv), cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=max(timeout_s, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    tail = log.read_text(errors="replace")[-1500:]
    return {"rc": rc, "timed_out": rc is None, "seconds": round(time.monotonic() - start, 1), "log": str(log),
            "output_tail": tail}


def install_wheelhouse(py: str, wheelhouse: Path, target: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Install every wheel offline and without dependencies into ``target`` (pip, or plain unzip without pip)."""
    wheels = sorted(wheelhouse.glob("*.whl"))
    if not wheels:
        return {"status": "missing", "reason": f"no wheels in {wheelhouse}; {WHEELHOUSE_HINT}"}
    info: dict[str, Any] = {"wheels": [w.name for w in wheels], "target": str(target)}
    has_pip = subprocess.run([py, "-m", "pip", "--version"], capture_output=True, check=False).returncode == 0
    if has_pip:
        info.update(method="pip", **run([py, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
                                         "--disable-pip-version-check", "--target", str(target),
                                         *map(str, wheels)], env, 120, log))
        info["status"] = "installed" if info["rc"] == 0 else "failed"
    else:  # a wheel is a zip of the files site-packages would hold; none of these needs its scripts
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(target)
        info.update(method="unzip (no pip on this interpreter)", status="installed")
    return info


def preflight(py: str, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Versions, GPUs and which modules import (with why a missing one is missing)."""
    outcome = run([py, "-c", PREFLIGHT, ",".join(MODULES)], env, 120, log)
    lines = [ln for ln in outcome["output_tail"].splitlines() if ln.startswith("{")]
    if outcome["rc"] != 0 or not lines:
        return {"cuda_available": False, "error": "the preflight process failed", **outcome}
    info: dict[str, Any] = json.loads(lines[-1])
    for name, mod in info["modules"].items():
        if not mod["present"]:
            mod["why"] = WHY_MISSING.get(name, WHEELHOUSE_HINT)
    return info


def tests_summary(xml: Path) -> dict[str, Any]:
    """Counts and each test's outcome from pytest's junit xml."""
    if not xml.is_file():
        return {}
    suite = ElementTree.parse(xml).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    if suite is None:
        return {}
    outcomes = {}
    for case in suite.iter("testcase"):
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = kinds[0] if kinds else "passed"
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")} | {"cases": outcomes}


def targets(parts_done: dict[str, Any]) -> dict[str, Any]:
    """End to end against the slower of its two stages (decode-only with that decoder, engine-only fp16)."""
    def rate(name: str) -> float | None:
        value = parts_done.get(name, {}).get("result", {}).get("images_per_s")
        return float(value) if value else None

    out: dict[str, Any] = {"rule": "end to end >= 0.85 x the slower stage (decode-only, engine-only fp16)",
                           "anchors": "published: DALI about 7,000 images/s on an A100; H100/H200 have 7 hardware "
                                      "JPEG decoders (NVIDIA); not measured here"}
    engine = rate("bench engine-fp16")
    for decoder in ("nvjpeg", "pil"):
        decode, e2e = rate(f"bench decode-{decoder}"), rate(f"bench e2e-{decoder}")
        if decode and engine and e2e:
            slower = min(decode, engine)
            out[decoder] = {"e2e_images_per_s": e2e, "slower_stage_images_per_s": slower,
                            "ratio": round(e2e / slower, 3), "met": e2e >= 0.85 * slower}
        else:
            out[decoder] = {"met": None, "reason": "a stage it needs did not run"}
    return out


def main(argv: list[str] | None = None) -> int:
    target = Path(tempfile.mkdtemp(prefix="fathombatch-gpu-site-"))
    try:
        return check(argv, target)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def check(argv: list[str] | None, target: Path) -> int:
    """The whole check, with the wheelhouse installed into ``target`` (first on the import path after the tree)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--wheelhouse", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--budget-s", type=float, default=450.0, help="for every part together (default 7.5 min)")
    parser.add_argument("--only", help="comma-separated part names to run (the rest are skipped); default all")
    args = parser.parse_args(argv)
    start, py = time.monotonic(), sys.executable
    dest = args.dest.resolve()
    (dest / "gpu_check_logs").mkdir(parents=True, exist_ok=True)
    out = dest / "gpu_check.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), str(target), os.environ.get("PYTHONPATH")) if p)}
    results: dict[str, Any] = {"complete": False, "budget_s": args.budget_s, "started": time.strftime("%FT%T%z")}
    results["wheelhouse"] = install_wheelhouse(py, args.wheelhouse, target, env, dest / "gpu_check_logs/pip.log")
    results["preflight"] = preflight(py, env, dest / "gpu_check_logs" / "preflight.log")
    todo = parts(py, dest)
    only = set(args.only.split(",")) if args.only else None
    results["parts"] = {p.name: {"status": "pending"} for p in todo}
    save(results, out)  # the preflight is on disk before anything that can hang
    for part in todo:
        left = args.budget_s - (time.monotonic() - start)
        entry = results["parts"][part.name]
        if not results["preflight"].get("cuda_available"):
            why = results["preflight"].get("torch_error") or "no CUDA GPU visible to PyTorch"
            entry.update(status="skipped", reason=why)
        elif only is not None and part.name not in only:
            entry.update(status="skipped", reason="not asked for (--only)")
        elif left < 20:
            entry.update(status="skipped", reason=f"out of time: {left:.0f} s of the {args.budget_s:g} s budget left")
        else:
            entry.update(run(part.argv, env, min(part.timeout_s, left), dest / "gpu_check_logs" /
                             f"{part.name.replace(' ', '_')}.log"))
            entry["status"] = "passed" if entry["rc"] == 0 else "timed out" if entry["timed_out"] else "failed"
            record = Path(part.argv[-1])
            if part.name == "gpu tests":
                entry["result"] = tests_summary(dest / "gpu_tests.xml")
            elif record.suffix == ".json" and record.is_file():
                entry["result"] = json.loads(record.read_text())
        save(results, out)
        print(f"[{time.strftime('%H:%M:%S')}] {part.name}: {entry['status']} {entry.get('reason', '')}", flush=True)
    results.update(targets=targets(results["parts"]), complete=True,
                   seconds=round(time.monotonic() - start, 1))
    save(results, out)
    print(f"gpu_check: {out} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
