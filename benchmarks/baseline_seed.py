"""The pipeline a user of the seed study would write: the baseline fathombatch is measured against.

PIL open + convert("RGB"), torchvision ``Resize((224, 224))`` + ``ToTensor`` + ``Normalize``, a ``DataLoader``
(batch 32, 2 workers), eager fp32 PyTorch, sigmoid, results kept in memory and written (CSV) at the end. It loads the
same weights fathombatch scores with, from a ``.pt`` engine, so outputs can be compared:

    .venv/bin/python benchmarks/baseline_seed.py DIR --engine engines/NAME.pt [--out baseline.csv]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms


class ImageFolderFlat(Dataset):
    """Every .jpg/.jpeg/.png under a folder, as the study's notebooks read them."""

    def __init__(self, root: Path, size: tuple[int, int], mean: list[float], std: list[float]) -> None:
        self.paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        self.transform = transforms.Compose(
            [transforms.Resize(size), transforms.ToTensor(), transforms.Normalize(mean, std)]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as im:
            return self.transform(im.convert("RGB")), i


def load_model(engine: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network of a fathombatch ``.pt`` engine and its manifest (weights only, as fathombatch loads them)."""
    from fathombatch.backends import read_manifest
    from fathombatch.models import create_model

    manifest = read_manifest(engine)
    blob = torch.load(engine, map_location="cpu", weights_only=True)
    model = create_model(blob["arch"], blob["num_classes"], img_size=blob["img_size"])
    model.load_state_dict(blob["state_dict"])
    return model.eval(), manifest.to_json()


def run_baseline(root: Path, engine: Path, *, batch_size: int = 32, workers: int = 2) -> dict[str, Any]:
    """Score a folder the seed-study way; returns {paths, probs (N, C), seconds, images_per_s}."""
    model, manifest = load_model(engine)
    spec = manifest["input"]
    dataset = ImageFolderFlat(root, (spec["height"], spec["width"]), spec["mean"], spec["std"])
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    outputs: list[np.ndarray] = []
    start = time.perf_counter()
    with torch.no_grad():
        for images, _ in loader:
            outputs.append(torch.sigmoid(model(images)).numpy())
    seconds = time.perf_counter() - start
    probs = np.concatenate(outputs) if outputs else np.empty((0, len(manifest["classes"])), dtype=np.float32)
    return {"paths": [str(p.relative_to(root)) for p in dataset.paths], "probs": probs, "seconds": seconds,
            "images_per_s": len(dataset) / seconds if seconds > 0 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--engine", type=Path, required=True, help="a fathombatch .pt engine")
    parser.add_argument("--out", type=Path, default=Path("baseline.csv"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    result = run_baseline(args.root, args.engine, batch_size=args.batch_size, workers=args.workers)
    with args.out.open("w", encoding="utf-8") as fh:  # written at the end, as the seed notebooks did
        for path, row in zip(result["paths"], result["probs"], strict=True):
            fh.write(path + "," + ",".join(f"{p:.6f}" for p in row) + "\n")
    print(f"{len(result['paths'])} images in {result['seconds']:.1f} s: {result['images_per_s']:.1f} images/s "
          f"({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
