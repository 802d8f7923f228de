"""Fail loudly when a wheelhouse is over its size budget (``make gpu-wheels`` calls this after downloading).

    python benchmarks/wheelhouse.py wheelhouse --max-mib 60
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def wheel_sizes(folder: Path) -> dict[str, int]:
    """File name -> size in bytes of every ``*.whl`` directly in ``folder``."""
    return {p.name: p.stat().st_size for p in sorted(folder.glob("*.whl"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--max-mib", type=float, required=True)
    args = parser.parse_args(argv)
    sizes = wheel_sizes(args.folder)
    if not sizes:
        print(f"Error: no wheels in {args.folder}", file=sys.stderr)
        return 1
    total = sum(sizes.values()) / 2**20
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"{size / 2**20:8.2f} MiB  {name}")
    print(f"{total:8.2f} MiB  total in {len(sizes)} wheels (budget {args.max_mib:g} MiB)")
    if total > args.max_mib:
        print(f"Error: {args.folder} holds {total:.2f} MiB of wheels, over the {args.max_mib:g} MiB budget: a GPU run "
              "carries at most 64 MiB with the working tree; drop a wheel from benchmarks/gpu-wheels.txt",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
