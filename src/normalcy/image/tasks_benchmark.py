"""The data behind `normalcy image benchmark --products` and `--discover`: the --data
categories, ELPV's two cell types (with --elpv) and the demo's synthetic discs, each gathered
as a product or a labelled set for `multiproduct.benchmark` and `discover.benchmark`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from normalcy.image.benchmark import categories


def multi_product(data, elpv, names: list[str], params: dict, json_path, cap: int | None, scratch) -> tuple:
    """Products: each --data category (its train/good; its test set), ELPV mono and poly
    (`elpv.split`; tested on grade 1 against grade 0) and the demo's discs (drawn in
    `scratch`, seed 0). `cap`: at most that many training and test images per product,
    drawn by seed 0."""
    from normalcy.image import DEFAULT
    from normalcy.image.datasets import load_dataset
    from normalcy.image.demo import make_dataset
    from normalcy.image.multiproduct import benchmark

    products = {}
    roots = categories(Path(data)) if data is not None else []
    for root in [*roots, make_dataset(Path(scratch) / "demo-discs", seed=0)]:
        dataset = load_dataset(root)
        name = "demo-discs" if root.parent == Path(scratch) else root.name
        products[name] = (dataset.train, [s.path for s in dataset.test], [s.label for s in dataset.test])
    if elpv is not None:
        from normalcy.image.elpv import TYPES, load_elpv, split

        cells = load_elpv(elpv)
        for cell_type in TYPES:
            part = split(cells, cell_type)
            keep = np.isin(part.test_grades, (0.0, 1.0))
            test = [p for p, k in zip(part.test, keep) if k]
            products[f"elpv-{cell_type}"] = (part.train, test, (part.test_grades[keep] == 1).astype(int).tolist())
    if cap is not None:
        products = {name: _capped(*parts, cap) for name, parts in products.items()}
    settings = {**params, **({"cap": cap} if cap else {})}
    json_out, md_out, _ = benchmark(products, (names or [DEFAULT])[0], settings, json_path)
    return json_out, md_out


def discovery(data, params: dict, json_path, scratch) -> tuple:
    from normalcy.image.discover import benchmark

    json_out, md_out, _ = benchmark(categories(Path(data)) if data is not None else [], params, json_path, scratch)
    return json_out, md_out


def _capped(train: list, test: list, labels: list, cap: int) -> tuple:
    rng = np.random.default_rng(0)
    pick = lambda n: np.sort(rng.choice(n, min(n, cap), replace=False))  # noqa: E731
    kept = pick(len(test))
    return [train[i] for i in pick(len(train))], [test[i] for i in kept], [labels[i] for i in kept]
