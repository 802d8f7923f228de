"""The Python API for notebooks: score, predict and evaluate in a few lines (docs/python.md).

::

    import fathombatch as fb
    df = fb.score("cruise/dive01", engine="engines/lite0.onnx")      # polars.DataFrame, the scores table's schema
    eng = fb.open_engine("engines/lite0.onnx")
    probs = eng.predict([pil_image, np_array])                      # (N, classes) float32
    df = fb.score(["a.jpg", "b.png"], engine=eng, batch_size=16)     # the opened engine, reused
    m = fb.evaluate(df, truth="labels.csv")                         # EvalResult; m.to_json() for a dict

Plain ``str`` paths work everywhere; errors are :mod:`fathombatch.errors` exceptions whose messages name these
functions' parameters, never command-line flags.
"""

from __future__ import annotations

from fathombatch.api.engine import LoadedEngine, open_engine
from fathombatch.api.evaluation import evaluate
from fathombatch.api.scoring import score

__all__ = ["LoadedEngine", "evaluate", "open_engine", "score"]
