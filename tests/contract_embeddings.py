"""Sample data for the detector contract (tests/test_contract.py) over the embedding detectors:
all-MiniLM-L6-v2 embeddings of short sentences with their text (the re-embedding detector
needs the model that made them), test vectors half untouched, half with noise added after
embedding, and hostile input (NaN, infinity, near-DBL_MAX values, empty, one row, the wrong
size, a missing column or text, wrong types)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from normalcy.core.checks import Case

# Small neighbourhoods and forests and few re-embedding checks keep the checks fast.
PARAMS = {"table": {"options": {"n_neighbors": 2}}, "reembed": {"check_items": 4}}

NORMAL = [
    "Chop the onions finely and fry them in butter.", "Simmer the tomato sauce for twenty minutes.",
    "Preheat the oven to 200 degrees before baking.", "Whisk the eggs with a pinch of salt.",
    "Knead the dough until it is smooth and elastic.", "Season the soup with pepper and fresh herbs.",
    "Roast the vegetables with olive oil and garlic.", "Boil the pasta in plenty of salted water.",
    "Grate the cheese over the warm gratin.", "Slice the bread and toast it lightly.",
]
TEST = ["Fry the mushrooms in a little butter.", "Bake the bread for forty minutes.",
        "Stir the risotto until the rice is creamy.", "Peel the potatoes and cut them into cubes."]


@functools.lru_cache(maxsize=1)
def embeddings() -> tuple[np.ndarray, np.ndarray]:
    from normalcy.text import minilm

    vectors = minilm().embed(NORMAL + TEST)
    return vectors[:len(NORMAL)], vectors[len(NORMAL):]


def frame(vectors, texts: list) -> pd.DataFrame:
    return pd.DataFrame({"embedding": list(vectors), "content": pd.Series(texts, dtype=object)})


def case() -> Case:
    fit, test = embeddings()
    rng = np.random.default_rng(7)
    noisy = (test + rng.normal(scale=0.02, size=test.shape)).astype(np.float32)
    test_frame = frame(np.concatenate([test, noisy]), TEST + TEST)
    labels = np.r_[np.zeros(len(TEST)), np.ones(len(TEST))].astype(int)
    with_nan = test_frame.copy()
    with_nan.at[0, "embedding"] = np.where(np.arange(test.shape[1]) == 3, np.nan, test[0])
    infinite = test.astype(np.float64)
    infinite[1, 5] = np.inf
    huge = test.astype(np.float64)
    huge[0, 0], huge[1, 1] = 1.7e308, -1e308
    return Case(fit=frame(fit, NORMAL), test=test_frame, labels=labels, hostile=[
        ("NaN in a vector", with_nan),
        ("infinity", infinite),
        ("values near DBL_MAX", huge),
        ("no vectors", test_frame.iloc[:0]),
        ("one vector", test_frame.iloc[:1]),
        ("a constant table", frame(np.repeat(fit[:1], 6, axis=0), NORMAL[:1] * 6)),
        ("vectors of another size", frame(test[:, :10], TEST)),
        ("vectors of different sizes", frame([test[0], test[1][:5]], TEST[:2])),
        ("a missing embedding column", test_frame.drop(columns=["embedding"])),
        ("a number for a text", frame(test[:2], ["fine", 3.5])),
        ("a lone surrogate in a text", frame(test[:1], ["bad \ud800"])),
        ("a text in a vector", frame([["a"] * test.shape[1]], TEST[:1])),
        ("a dict", {"embedding": [1.0]}),
        ("a 3-d array", np.zeros((2, 2, 2))),
        ("a 1-d array", np.zeros(4)),
    ])
