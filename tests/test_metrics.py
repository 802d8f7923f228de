from __future__ import annotations

import numpy as np
import pytest

from fathombatch import metrics as M
from fathombatch.labels import read_labels

from .conftest import data_file


def apk_loop(actual: set[int], predicted: list[int], k: int = 20) -> float:
    """The competition's reference implementation, written as a plain loop."""
    predicted = predicted[:k]
    score, hits = 0.0, 0.0
    for i, p in enumerate(predicted):
        if p in actual and p not in predicted[:i]:
            hits += 1.0
            score += hits / (i + 1.0)
    if not actual:
        return 0.0
    return score / min(len(actual), k)


@pytest.mark.parametrize("predicted", [[1, 2, 3, 4, 5], [1, 1, 1, 1, 1], [1, 2, 1, 3, 1]])
def test_worked_examples_score_one(predicted: list[int]) -> None:
    assert M.map_at_k_from_lists([[1]], [predicted]) == 1.0


def test_random_cases_agree_with_the_loop() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, c, k = int(rng.integers(1, 30)), int(rng.integers(1, 15)), int(rng.integers(1, 25))
        truth = [list(rng.choice(c, int(rng.integers(0, min(c, 6) + 1)), replace=False)) for _ in range(n)]
        preds = [list(rng.integers(0, c + 3, int(rng.integers(0, 30)))) for _ in range(n)]
        expected = float(np.mean([apk_loop(set(t), p, k) for t, p in zip(truth, preds, strict=True)]))
        assert M.map_at_k_from_lists(truth, preds, k) == pytest.approx(expected, abs=1e-12)


def test_scores_path_agrees_with_lists_path() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random((200, 40))
    y = rng.random((200, 40)) < 0.05
    ranked = np.argsort(-scores, axis=1)[:, :20]
    truth = [list(np.flatnonzero(row)) for row in y]
    assert M.map_at_k_from_scores(y, scores) == pytest.approx(M.map_at_k_from_lists(truth, ranked.tolist()))


def test_edge_cases_are_pinned() -> None:
    # k larger than the prediction list: missing ranks simply score nothing
    assert M.map_at_k_from_lists([[1, 2]], [[1]], k=20) == pytest.approx(0.5)
    # an image without true labels scores 0, even with predictions
    assert M.map_at_k_from_lists([[], [1]], [[1], [1]]) == pytest.approx(0.5)
    # the denominator is min(#true, k): 25 true labels all predicted in the top 20 score 1
    assert M.map_at_k_from_lists([list(range(25))], [list(range(20))]) == 1.0
    # a relevant label after rank k is ignored
    assert M.map_at_k_from_lists([[7]], [list(range(100, 120)) + [7]]) == 0.0
    # hits at ranks 2 and 4 of 2 true labels: (1/2 + 2/4) / 2
    assert M.map_at_k_from_lists([[5, 6]], [[0, 5, 1, 6]]) == pytest.approx(0.5)


def test_ties_go_to_the_lower_column_index() -> None:
    scores = np.array([[0.2, 0.5, 0.5, 0.1, 0.5]])
    assert M.ranking_from_scores(scores, 3).tolist() == [[1, 2, 4]]
    assert M.ranking_from_scores(scores, 5).tolist() == [[1, 2, 4, 0, 3]]
    # a tie across the cut-off is decided by column index too
    flat = np.full((2, 300), 0.5)
    assert M.ranking_from_scores(flat, 20).tolist() == [list(range(20))] * 2


def test_ranking_matches_a_full_stable_sort_on_many_rows() -> None:
    rng = np.random.default_rng(2)
    scores = np.round(rng.random((9000, 290)), 2).astype(np.float32)  # many ties
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(M.ranking_from_scores(scores, 20), expected)


def test_prior_floor_on_the_real_training_labels_is_0_497() -> None:
    y = read_labels(data_file("train.csv")).multi_hot()
    assert M.prior_floor(y, y.sum(axis=0)) == pytest.approx(0.497, abs=0.0005)


def test_prior_ranking_orders_by_frequency() -> None:
    assert M.prior_ranking(np.array([3, 9, 0, 9, 1]), 4).tolist() == [1, 3, 0, 4]


def test_sauc_and_competition_score() -> None:
    assert M.sauc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert M.sauc(np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])) == -1.0
    assert M.sauc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.0
    assert M.competition_score(0.5, 0.7) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="both"):
        M.sauc(np.array([1, 1]), np.array([0.1, 0.2]))


def test_per_class_ap_is_nan_without_positives() -> None:
    y = np.array([[1, 0], [0, 0], [1, 0]])
    s = np.array([[0.9, 0.1], [0.1, 0.2], [0.8, 0.3]])
    ap = M.per_class_ap(y, s)
    assert ap[0] == 1.0 and np.isnan(ap[1])


def test_one_sigmoid_without_overflow() -> None:
    import warnings

    from fathombatch.probability import sigmoid

    logits = np.array([[-1000.0, -20.0, 0.0, 20.0, 1000.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old 1 / (1 + exp(-x)) raised an overflow RuntimeWarning here
        probs = sigmoid(logits)
    assert probs.dtype == np.float32 and probs.shape == (1, 5)
    np.testing.assert_allclose(probs[0], [0.0, 1 / (1 + np.exp(20.0)), 0.5, 1 / (1 + np.exp(-20.0)), 1.0], rtol=1e-6)
