"""One scoring run's settings, resolved once: :class:`ScorePlan`.

The plan is built on the machine that starts the run, from the caller's :class:`~fathombatch.scoring.config.ScoreConfig`
and the engine's manifest, and then travels unchanged to whoever scores: the local pipeline, the GPU worker processes
(pickled through ``spawn``) or the Ray actors (pickled to other machines). Every runner therefore opens the same engine
file with the same device, precision and threads and decodes with the same decoder; nothing is rebuilt from loose
arguments or dictionaries on the other side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fathombatch.backends import Engine, Manifest
from fathombatch.decode.video import interval_ms
from fathombatch.decode.video_dali import resolve_video_decoder
from fathombatch.errors import EngineError, UsageError, param
from fathombatch.osd import create_osd
from fathombatch.scoring.config import ScoreConfig, decode_threads

#: The video decoder recorded by a run without videos: a machine whose ``auto`` resolves to another decoder (a GPU
#: box with DALI, a laptop with PyAV only) can resume or update its table, and add videos to it.
NO_VIDEOS = "none"


@dataclass(frozen=True)
class ScorePlan:
    """Everything a runner needs to score files the way this run does; frozen and picklable.

    Attributes:
        root: the dump folder; file paths handed to runners are relative to it.
        engine: the engine file (resolved: no engine-store lookup is left to do).
        engine_fingerprint: the manifest's fingerprint (what a resume must match).
        decoder: the decoder's resolved name (never ``auto``).
        batch_size: images per engine call.
        top_k: length of ``top_categories``.
        osd: the out-of-sample method's resolved name.
        threads: CPU threads for the engine (None: the runtime's default).
        decode_threads: decoder threads.
        device: GPU number the engine and decoder run on, None for the CPU. A Ray actor's 0 is the GPU Ray reserved
            for it (Ray makes only that GPU visible to the actor).
        precision: ``.pt`` engines on a GPU: ``fp32``, or autocast to ``fp16``/``bf16``.
        frame_interval: seconds between sampled video frames.
        video_decoder: what decodes videos, resolved (never ``auto``): ``pyav``, ``dali`` (DALI's CPU backend) or
            ``dali-gpu`` (NVDEC on GPU ``device``, or GPU 0 when the engine runs on the CPU).
    """

    root: Path
    engine: Path
    engine_fingerprint: str
    decoder: str
    batch_size: int
    top_k: int
    osd: str
    threads: int | None
    decode_threads: int
    device: int | None
    precision: str
    frame_interval: float = 1.0
    video_decoder: str = "pyav"

    def run_params(self, inference_precision: str) -> dict[str, Any]:
        """The parameters that determine the values of a row: a resume must match them exactly.

        Args:
            inference_precision: what the engine computes in (:attr:`Engine.inference_precision`).
        """
        return {
            "engine_fingerprint": self.engine_fingerprint,
            "engine": str(self.engine),
            "decoder": self.decoder,
            "top_k": self.top_k,
            "osd": self.osd,
            "root": str(self.root.resolve()),
            "torch_precision": self.precision,
            "inference_precision": inference_precision,
            # Another interval samples other frames: rows of one interval cannot resume a run of another.
            "frame_interval": self.frame_interval,
            # Decoders convert YUV to RGB and resize differently: frames of one cannot resume a run of another.
            # NO_VIDEOS (a run without videos) matches any other: nothing of a video decoder is in its rows.
            "video_decoder": self.video_decoder,
        }


def build_plan(cfg: ScoreConfig, engine: Path, manifest: Manifest, decoder: str, device: int | None,
               videos: bool = True) -> ScorePlan:
    """The plan of ``cfg`` for the resolved engine file, its manifest, decoder and device.

    ``videos``: whether the run's files include videos; without any the video decoder is not resolved (which may
    import DALI and PyTorch) and is recorded as :data:`NO_VIDEOS`.

    Raises:
        UsageError: ``top_k`` outside 1..(number of classes), an unknown out-of-sample method, a frame interval
            under 1 ms, or an unknown video decoder.
        MissingDependencyError: ``video_decoder`` ``dali`` without DALI installed.
    """
    n_classes = len(manifest.taxonomy)
    if not 1 <= cfg.top_k <= n_classes:
        raise UsageError(f"{param('top_k')} must be between 1 and {n_classes}, got {cfg.top_k}")
    osd = cfg.osd or str(manifest.osd.get("method", "max-prob"))
    create_osd(osd, manifest.osd.get("stats"))  # refuses an unknown method before any work starts
    interval_ms(cfg.frame_interval)  # refused here, not by the decode thread once scoring has started
    return ScorePlan(
        root=cfg.root,
        engine=engine,
        engine_fingerprint=manifest.fingerprint(),
        decoder=decoder,
        batch_size=cfg.batch_size,
        top_k=cfg.top_k,
        osd=osd,
        threads=cfg.threads,
        decode_threads=cfg.decode_threads or decode_threads(cfg.threads),
        device=device,
        precision=cfg.torch_precision,
        frame_interval=cfg.frame_interval,
        video_decoder=resolve_video_decoder(cfg.video_decoder, device) if videos else NO_VIDEOS,
    )


class UnopenedEngine(Engine):
    """An engine's path and checked manifest, for a process that starts workers which open it; it runs nothing."""

    runtime = "unopened"

    def __init__(self, path: Path, manifest: Manifest, *, opened_by: str = "the GPU workers") -> None:
        super().__init__(path, manifest)
        self.opened_by = opened_by

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise EngineError(f"{self.path} is opened by {self.opened_by}, not by the process that starts them")
