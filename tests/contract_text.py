"""Sample data for the detector contract (tests/test_contract.py) over the text detector:
kitchen sentences as normal texts, off-topic ones as anomalies, and hostile input (no texts,
a single string, non-strings, a lone surrogate, an empty and a very long text)."""

from __future__ import annotations

import numpy as np

from normalcy.core.checks import Case

PARAMS = {"embedding": {"options": {"n_neighbors": 2}}}

NORMAL = [
    "Chop the onions finely and fry them in butter.", "Simmer the tomato sauce for twenty minutes.",
    "Preheat the oven to 200 degrees before baking.", "Whisk the eggs with a pinch of salt.",
    "Knead the dough until it is smooth and elastic.", "Season the soup with pepper and fresh herbs.",
    "Roast the vegetables with olive oil and garlic.", "Boil the pasta in plenty of salted water.",
]
ON_TOPIC = ["Fry the mushrooms in a little butter.", "Bake the bread for forty minutes."]
OFF_TOPIC = ["The server rejected the TLS handshake.", "Parliament passed the new budget law today."]


def case() -> Case:
    return Case(fit=NORMAL, test=ON_TOPIC + OFF_TOPIC, labels=np.array([0, 0, 1, 1]), hostile=[
        ("no texts", []),
        ("a single string", "just one text"),
        ("a number among the texts", ["fine", 3.5]),
        ("None among the texts", ["fine", None]),
        ("a lone surrogate", ["bad \ud800 text"]),
        ("an empty text", [""]),
        ("one very long text", ["kernel panic " * 20_000]),
        ("a dict", {"text": "x"}),
    ])
