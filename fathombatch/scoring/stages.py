"""Where a local run's time goes: each side of the decode -> engine pipeline, busy and waiting.

The local pipeline (:mod:`fathombatch.scoring.runners.local`) overlaps a decode thread with the engine thread through
a two-batch queue, so its rate is set by the slower side, and each side's waiting says which one that is:

* the engine side starved (waiting for a decoded batch) -> decoding is the bottleneck;
* the decode side blocked (waiting for room in the queue) -> the engine (or building the rows) is.

Comparing a side's busy seconds per batch inside a run with the same stage measured alone (``bench``, the GPU check)
shows what sharing the process costs it: cores, the GIL, memory bandwidth. That comparison is how the GPU check
attributes a gap between end to end and the slower stage (docs/gpu.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class StageTimes:
    """Seconds summed over a run's batches; the decode thread writes the ``decode`` fields, the scoring thread the
    ``score`` ones (disjoint, so no lock).

    Attributes:
        batches: batches the scoring thread scored (stills and video frames).
        decode_s: decode thread inside the decoder (read, decode, resize, normalise a batch) or the video sampler.
        decode_blocked_s: decode thread waiting for room in the queue (the engine side was slower).
        score_s: scoring thread running the engine and building the batch's rows.
        score_starved_s: scoring thread waiting for a decoded batch (the decode side was slower).
        write_s: scoring thread handing the rows on (the caller writing part files and progress) between batches.
    """

    batches: int = 0
    decode_s: float = 0.0
    decode_blocked_s: float = 0.0
    score_s: float = 0.0
    score_starved_s: float = 0.0
    write_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The fields, for a JSON record."""
        return asdict(self)

    def describe(self) -> str:
        """One line: each side's busy and waiting seconds, and which side set the pace."""
        slower = "decoding" if self.score_starved_s > self.decode_blocked_s else "the engine"
        return (f"{self.batches} batches: decode {self.decode_s:.2f} s busy, {self.decode_blocked_s:.2f} s waiting "
                f"for the engine; engine + rows {self.score_s:.2f} s busy, {self.score_starved_s:.2f} s waiting for "
                f"decoding, {self.write_s:.2f} s writing rows ({slower} set the pace)")
