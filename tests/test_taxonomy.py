from __future__ import annotations

import pytest

from fathombatch.errors import TaxonomyError
from fathombatch.taxonomy import Category, Taxonomy, fathomnet2023


def test_fathomnet2023_has_290_categories_in_20_supercategories() -> None:
    tax = fathomnet2023()
    assert len(tax) == 290
    assert len(set(tax.supercategories)) == 20
    assert tax.ids == tuple(range(1, 291))


def test_category_id_k_is_column_k_minus_1() -> None:
    tax = fathomnet2023()
    assert tax.column_of[1] == 0 and tax.column_of[290] == 289
    assert tax.columns([160, 1]) == [159, 0]
    assert tax.names[159] == "Strongylocentrotus fragilis"
    assert tax.supercategories[159] == "Urchin"


def test_unknown_id_raises_keyerror() -> None:
    with pytest.raises(KeyError):
        fathomnet2023().columns([291])


def test_records_keep_their_order_unless_sorting_is_asked_for() -> None:
    records = [{"id": 5, "name": "b", "supercategory": "S"}, {"id": 2.0, "name": "a"}]
    assert Taxonomy.from_records(records).ids == (5, 2)  # a manifest's classes are in output-column order
    tax = Taxonomy.from_records(records, sort=True)
    assert tax.ids == (2, 5)
    assert Taxonomy.from_records(tax.to_records()) == tax


@pytest.mark.parametrize(
    ("cats", "message"),
    [
        ((Category(1, "a", ""), Category(1, "b", "")), "appears twice"),
        ((Category(1, "a", ""), Category(2, "a", "")), "name 'a' appears twice"),
        ((Category(1, "path", ""),), "clashes with a scores-table column"),
        ((Category(1, " padded", ""),), "empty or padded"),
        ((), "no categories"),
    ],
)
def test_invalid_taxonomies_are_refused(cats: tuple[Category, ...], message: str) -> None:
    with pytest.raises(TaxonomyError, match=message):
        Taxonomy(categories=cats)
