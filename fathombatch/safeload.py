"""Load PyTorch files without running code: ``torch.load(weights_only=True)`` with errors a user can act on.

Pickle files can execute arbitrary code when loaded. Engines, checkpoints and weights files are therefore loaded
with ``weights_only=True``, which unpickles only tensors and plain containers; a file that needs anything else is
refused with a message saying why, never loaded "just this once".
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from fathombatch.errors import EngineError


def load_torch_file(path: str | Path, what: str) -> Any:
    """Load ``path`` safely; any failure becomes one EngineError naming ``what`` (e.g. "checkpoint") and the file."""
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if zipfile.is_zipfile(path):
            reason = _refusal_reason(str(exc))
            raise EngineError(
                f"{what} {path} contains Python objects other than tensors and was refused, because loading it "
                f"could run code ({reason})"
            ) from None
        raise EngineError(f"{what} {path} is not a PyTorch file that can be loaded safely") from None
    except Exception as exc:  # noqa: BLE001 - zip, EOF and runtime errors for truncated or foreign files
        raise EngineError(f"{what} {path} cannot be loaded: {str(exc).splitlines()[0][:200]}") from None


def _refusal_reason(message: str) -> str:
    """What torch found in the file (e.g. ``Unsupported global: GLOBAL print``), without its advice on how to load
    the file anyway: that advice (``weights_only=False``, allow-listing globals) is exactly the unsafe option."""
    found = re.search(r"Unsupported (?:global|operand)[^.]*?(?= was not|\.|$)", message)
    if found:
        return found.group(0).strip()[:200]
    return "an object that is not a tensor or a plain container"
