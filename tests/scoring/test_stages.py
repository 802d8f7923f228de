"""Each side of the local pipeline's busy and waiting seconds (fathombatch.scoring.stages), reported in the summary:
the waiting side is the faster one, so a slow engine shows as the decoder blocked and a slow decoder as the engine
starved."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import pytest

import fathombatch.scoring.batch as batch_module
from fathombatch.decode.pil import PilDecoder
from fathombatch.scoring import ScoreConfig, score_folder

#: The delay put on one side, per batch: far above anything else a 3-batch run of tiny images waits for.
DELAY_S = 0.4


def _config(dive: Path, engines: dict, out: Path, batch_size: int = 8) -> ScoreConfig:
    return ScoreConfig(root=dive / "images", engine=engines["onnx"], out=out, decoder="pil", batch_size=batch_size)


def test_a_local_run_reports_each_side_of_its_pipeline(dive: Path, engines: dict, tmp_path: Path) -> None:
    summary = score_folder(_config(dive, engines, tmp_path / "s.parquet"))
    stages = summary.stages
    assert stages is not None and stages.batches == math.ceil(summary.files / 8)
    assert stages.decode_s > 0 and stages.score_s > 0
    assert stages.score_s + stages.score_starved_s + stages.write_s <= summary.seconds
    again = score_folder(dataclasses.replace(_config(dive, engines, tmp_path / "s.parquet"), update=True))
    assert again.scored_now == 0 and again.stages is None


def test_a_slow_engine_shows_as_the_decoder_waiting(dive: Path, engines: dict, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real = batch_module.score_batch

    def slow_engine(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        time.sleep(DELAY_S)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(batch_module, "score_batch", slow_engine)
    # 6 batches: the engine holds one and the queue two, so the decoder waits for the other three.
    stages = score_folder(_config(dive, engines, tmp_path / "s.parquet", batch_size=4)).stages
    assert stages is not None and stages.batches == 6 and stages.score_s >= stages.batches * DELAY_S
    assert stages.decode_blocked_s >= 2 * DELAY_S > stages.score_starved_s
    assert "the engine set the pace" in stages.describe()


def test_a_slow_decoder_shows_as_the_engine_waiting(dive: Path, engines: dict, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real = PilDecoder.decode

    def slow_decode(self: PilDecoder, paths: object):  # type: ignore[no-untyped-def]
        time.sleep(DELAY_S)
        return real(self, paths)  # type: ignore[arg-type]

    monkeypatch.setattr(PilDecoder, "decode", slow_decode)
    stages = score_folder(_config(dive, engines, tmp_path / "s.parquet")).stages
    assert stages is not None and stages.decode_s >= stages.batches * DELAY_S
    assert stages.score_starved_s >= stages.batches * DELAY_S * 0.9 and stages.decode_blocked_s < DELAY_S
    assert "decoding set the pace" in stages.describe()
