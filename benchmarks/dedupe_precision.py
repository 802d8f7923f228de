"""Precision and recall of `curate dedupe`'s drop suggestions on planted pairs, per radius and guard.

Run: .venv/bin/python benchmarks/dedupe_precision.py [--scenes 60] [--engine ENGINE]
Writes benchmarks/results/dedupe_precision.json and prints a Markdown table (quoted in docs/curation.md).

The planted set, built in benchmarks/work/dedupe/ from the package's synthetic-dive renderer:

* per scene, an *original*: one animal (the category and box of the first annotation of a `fathombatch synth` image,
  so real FathomNet box sizes at the real frame-size mix) over a murky background, JPEG quality 90;
* four planted copies of it: a byte-identical copy, a half-size JPEG, a 1.5x JPEG (quality 95) and a quality-50
  re-encode — the duplicates dedupe should suggest dropping;
* a *twin*: the same background, noise and box with an animal of another category — an ROV on station while a
  second species passes. It must never be dropped.

A suggested drop is *correct* when its cluster keeps a copy of the same original (nothing is lost), *wrong*
otherwise. Precision = correct / suggested; recall = correct / planted copies (4 per scene). Near duplicates that
only pixels vouch for are not suggested but listed to review: `to_review` counts them and `twins_to_review` the
twins among them. Guards: `pixels` (pHash and SHA-256 only: drops are byte-identical copies), `labels` (a label
file giving every image its category, copies like their original),
`engine` and `engine+labels` (with `--engine`: embedding SimHashes at the default radius of 3 bits too).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fathombatch.curate.dedupe import find_clusters
from fathombatch.curate.dupelabels import label_sets
from fathombatch.curate.hashing import hash_files
from fathombatch.labels import write_kaggle_csv
from fathombatch.synth import SynthConfig, render_scene, synthesize
from fathombatch.taxonomy import fathomnet2023

HERE = Path(__file__).resolve().parent
COPIES = ("exact", "half", "up", "q50")


def _jpeg(image: Image.Image, dest: Path, quality: int) -> None:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    dest.write_bytes(buf.getvalue())


def plant(work: Path, scenes: int, seed: int) -> tuple[list[str], dict[str, str], list[tuple[str, list[int]]]]:
    """Write the planted set; returns the file names, each file's source (``s<k>`` or ``s<k>-twin``) and labels."""
    boxes_dive = work / "boxes"
    synthesize(SynthConfig(out=boxes_dive, images=scenes, seed=seed))
    coco = json.loads((boxes_dive / "annotations.json").read_text())
    size = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
    first = {}
    for ann in coco["annotations"]:
        first.setdefault(ann["image_id"], ann)
    ids = fathomnet2023().ids
    rng = np.random.default_rng(seed)
    images = work / "images"
    images.mkdir()
    source: dict[str, str] = {}
    labels: list[tuple[str, list[int]]] = []
    for k, (image_id, ann) in enumerate(sorted(first.items())):
        w, h = size[image_id]
        x, y, bw, bh = (round(v) for v in ann["bbox"])
        bw, bh = max(6, min(bw, w - x)), max(6, min(bh, h - y))
        cat = int(ann["category_id"])
        other = int(rng.choice([c for c in ids if c != cat]))
        for name, category in ((f"s{k:03d}", cat), (f"s{k:03d}-twin", other)):
            pixels = render_scene(w, h, [(category, x, y, bw, bh)], np.random.default_rng([seed, k]))
            _jpeg(Image.fromarray(pixels), images / f"{name}.jpg", 90)
            source[f"{name}.jpg"] = name
            labels.append((name, [category]))
        original = images / f"s{k:03d}.jpg"
        shutil.copy(original, images / f"s{k:03d}-exact.jpg")
        with Image.open(original) as im:
            _jpeg(im.resize((w // 2, h // 2), Image.Resampling.LANCZOS), images / f"s{k:03d}-half.jpg", 90)
            _jpeg(im.resize((w * 3 // 2, h * 3 // 2), Image.Resampling.LANCZOS), images / f"s{k:03d}-up.jpg", 95)
            _jpeg(im, images / f"s{k:03d}-q50.jpg", 50)
        for copy in COPIES:
            source[f"s{k:03d}-{copy}.jpg"] = f"s{k:03d}"
            labels.append((f"s{k:03d}-{copy}", [cat]))
    return sorted(source), source, labels


def score(clusters: list[dict], source: dict[str, str], planted: int) -> dict[str, float]:
    """Precision, recall and counts of one configuration's suggested drops."""
    kept: dict[int, set[str]] = {}
    for row in clusters:
        if row["keep"]:
            kept.setdefault(row["cluster"], set()).add(source[row["path"]])
    drops = [r for r in clusters if not r["keep"]]
    correct = sum(source[r["path"]] in kept.get(r["cluster"], set()) for r in drops)
    twins = sum(r["path"].endswith("-twin.jpg") for r in drops)
    review = [r for r in clusters if r["to_review"]]
    return {"suggested": len(drops), "correct": correct, "wrong": len(drops) - correct, "twins_dropped": twins,
            "precision": correct / len(drops) if drops else 1.0, "recall": correct / planted,
            "to_review": len(review), "twins_to_review": sum(r["path"].endswith("-twin.jpg") for r in review)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", help="engine for the embedding guard (e.g. a densenet121 exported by fathombatch)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dedupe_precision.json")
    args = parser.parse_args()
    work = HERE / "work" / "dedupe"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.perf_counter()
    paths, source, labels = plant(work, args.scenes, args.seed)
    write_kaggle_csv(work / "labels.csv", labels)
    files = [work / "images" / p for p in paths]
    hashes = hash_files(files)
    tags = label_sets(work / "labels.csv", paths)
    guards: dict[str, tuple[tuple[np.ndarray, np.ndarray] | None, list | None]] = {"pixels": (None, None),
                                                                                    "labels": (None, tags)}
    if args.engine:
        from fathombatch.curate.embeddings import embedding_hashes

        emb = embedding_hashes(files, args.engine)
        guards.update({"engine": (emb, None), "engine+labels": (emb, tags)})
    planted = sum(source[p] != p.removesuffix('.jpg') for p in paths)  # the copies
    scenes = planted // len(COPIES)
    rows = []
    for guard, (emb, tag) in guards.items():
        for radius in (0, 2, 4, 6, 8):
            clusters = find_clusters(paths, hashes, radius, emb, 3, tag).to_dicts()
            rows.append({"guard": guard, "max_distance": radius, **score(clusters, source, planted)})
    result = {"scenes": scenes, "seed": args.seed, "images": len(paths), "planted_copies": planted,
              "engine": args.engine and Path(args.engine).name, "cpu_count": os.cpu_count(),
              "seconds": round(time.perf_counter() - start, 1), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(paths)} images: {scenes} originals, {planted} planted copies, {scenes} twins "
          f"(another species on the same background); engine: {result['engine']}\n")
    print("| guard | max distance | suggested | correct | wrong (twins) | precision | recall | to review (twins) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['guard']} | {r['max_distance']} | {r['suggested']} | {r['correct']} | {r['wrong']} "
              f"({r['twins_dropped']}) | {r['precision']:.3f} | {r['recall']:.3f} | {r['to_review']} "
              f"({r['twins_to_review']}) |")


if __name__ == "__main__":
    main()
