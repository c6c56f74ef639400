"""One model for several products: a router and one detector per product.

Fitting takes each training image's product (`fit(X, y)`, y = product names). The router
remembers every training image's pooled backbone features (all levels between the stem and
the head, each standardised on the training images and weighted equally); an image goes to
the product whose ROUTER_K nearest training images are nearest on average (a kNN vote is
robust to a product whose images vary in more than one way, where one centroid is not).
Each product's detector (`detector`, any registered image detector, with `detector_params`)
is fitted on that product's images less a `holdout` share, whose scores put the products on
one scale: score' = (score - mean) / (standard deviation) over the product's held-out
normals (at least 2 each), a z-score, so one threshold serves them all (set from the pooled held-out scores', by
`fit`'s `threshold`, fpr:0.01 by default). Maps are rescaled the same way.

The class has no registry `name`: it needs product labels to fit, so it is not a drop-in
detector for `--model` or the contract suite (whose checks fit on unlabelled images); it is
still a registered class, so its model folders load like any other (`normalcy image
predict`, serving). `route(X)` says which product each image matched.
"""

from __future__ import annotations

import numpy as np
import torch

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.registry import build, check_params, detector_class, parameter_names
from normalcy.core.results import Prediction
from normalcy.core.threads import thread_limit
from normalcy.core.threshold import F1Optimal, FalseAlarmRate, Fixed, ThresholdStrategy
from normalcy.image.base import ImageDetector, _as_items, is_int

ROUTER_K = 5
SHARED = ("backbone", "image_size", "batch_size", "threads", "weights", "resize")


class MultiProduct(ImageDetector):
    """Several products in one model: kNN routing on pooled features, one detector each.

    Parameters:

    - detector: the registered image detector each product gets (default "patchcore").
    - detector_params: its parameters beyond the shared ones below (default None: its defaults).
    - holdout: share of each product's images held out to put its scores on the common
      scale (default 0.1; at least 2 images per product are held out).
    - seed: seed of the holdout split, also given to detectors that take one (default 0).
    - backbone ("efficientnet-lite0"), image_size (256), batch_size (8), threads (None),
      weights (None) and resize ("squash"): as for every image detector, shared by the
      router and every product's detector.
    """

    _fitted_attribute = "products_"

    def __init__(
        self,
        detector: str = "patchcore",
        detector_params: dict | None = None,
        holdout: float = 0.1,
        seed: int = 0,
        backbone: str = "efficientnet-lite0",
        image_size: int = 256,
        batch_size: int = 8,
        threads: int | None = None,
        weights: str | None = None,
        resize: str = "squash",
    ):
        super().__init__(backbone, image_size, batch_size, threads, weights, resize)
        self.detector = detector
        self.detector_params = detector_params
        self.holdout = holdout
        self.seed = seed

    @property
    def explains(self) -> bool:
        return detector_class("image", self.detector).explains

    def _check_params(self):
        super()._check_params()
        if not isinstance(self.detector, str):
            raise DataError(f"detector must be an image detector's name, got {self.detector!r}")
        cls = detector_class("image", self.detector)
        if self.detector_params is not None:
            if not isinstance(self.detector_params, dict):
                raise DataError(f"detector_params must be a dict or None, got {self.detector_params!r}")
            shared = sorted(set(self.detector_params) & set(SHARED))
            if shared:
                raise DataError(f"detector_params must not set {', '.join(shared)}: give them to MultiProduct itself")
            check_params(cls, self.detector_params)
        h = self.holdout
        if not (isinstance(h, float) and 0.0 < h < 1.0):
            raise DataError(f"holdout must be a number in (0, 1), got {h!r}")
        if not is_int(self.seed):
            raise DataError(f"seed must be an integer, got {self.seed!r}")

    # --- fitting -----------------------------------------------------------------------
    def fit(self, X, y=None, threshold: ThresholdStrategy | None = None) -> "MultiProduct":
        """X: training images of every product; y: each one's product name. `threshold`:
        how the common threshold is set from the held-out images (default fpr:0.01)."""
        self._check_params()
        images = _as_items(X)
        if y is None or len(y) != len(images):
            raise DataError(f"MultiProduct.fit needs each training image's product: y with {len(images)} names")
        names = [str(p) for p in y]
        products = sorted(set(names))
        if len(products) < 2:
            raise DataError(f"one model for several products needs at least 2 products, got {products}")
        threshold = threshold or FalseAlarmRate(0.01)
        if isinstance(threshold, F1Optimal):
            raise DataError("threshold f1 needs labelled anomalies; use fpr:RATE or fixed:VALUE")
        labels = np.array([products.index(p) for p in names])
        self._fit_encoded((f for f, _ in self._batches(images, "route")), len(images))
        self.router_labels_ = labels
        rng = np.random.default_rng(self.seed)
        detectors, centre, spread, held_scores = [], [], [], []
        for k, product in enumerate(products):
            idx = np.flatnonzero(labels == k)
            n_held = max(2, int(round(self.holdout * len(idx))))
            if len(idx) - n_held < 2:
                raise DataError(f"product {product!r} has {len(idx)} training images; it needs at least {n_held + 2}")
            order = rng.permutation(idx)
            sub = self._new_detector().fit([images[i] for i in np.sort(order[n_held:])])
            held = sub.decision_function([images[i] for i in np.sort(order[:n_held])])
            mid = float(held.mean())
            detectors.append(sub)
            centre.append(mid)
            spread.append(max(float(held.std(ddof=1)), 1e-12 * max(1.0, abs(mid))))
            held_scores.append((held - mid) / spread[-1])
        self.detectors_, self.centre_, self.spread_ = detectors, np.array(centre), np.array(spread)
        self.products_ = products
        if isinstance(threshold, Fixed):
            self.set_threshold(threshold.compute(), threshold.spec())
        else:
            self.calibrate_scores(np.concatenate(held_scores), threshold)
        return self

    def _new_detector(self) -> ImageDetector:
        cls = detector_class("image", self.detector)
        accepted = parameter_names(cls)
        shared = {k: getattr(self, k) for k in (*SHARED, "seed") if k in accepted}
        return build("image", self.detector, {**(self.detector_params or {}), **shared})

    def _encode(self, batch):
        """Pooled features of every level between the stem and the head: the router's input."""
        levels = tuple(range(1, len(self.extractor.channels) - 1))
        with torch.inference_mode():
            return torch.cat([f.mean(dim=(2, 3)) for f in self.extractor(batch, levels)], dim=1)

    def _fit_encoded(self, batches, n_images):
        pooled = torch.cat(list(batches)).double().numpy()
        self.router_mean_ = pooled.mean(0)
        self.router_std_ = pooled.std(0) + 1e-6
        self.router_ = self._standardise(pooled).astype(np.float32)

    def _standardise(self, pooled: np.ndarray) -> np.ndarray:
        x = (pooled - self.router_mean_) / self.router_std_
        blocks = np.split(x, np.cumsum(self.extractor.channels[1:-1])[:-1], axis=1)
        return np.concatenate([b / np.sqrt(b.shape[1]) for b in blocks], axis=1)

    # --- scoring -----------------------------------------------------------------------
    def _score_encoded(self, features):
        """The product index of each image of an encoded batch (the router's choice)."""
        x = torch.from_numpy(self._standardise(features.double().numpy()).astype(np.float32))
        d = torch.cdist(x, torch.from_numpy(self.router_))
        labels = torch.from_numpy(self.router_labels_)
        best = torch.empty(len(x), len(self.products_))
        for k in range(len(self.products_)):
            dk = d[:, labels == k]
            best[:, k] = dk.topk(min(ROUTER_K, dk.shape[1]), dim=1, largest=False).values.mean(1)
        return best.argmin(1)

    def route(self, X) -> list[str]:
        """The product each image matched."""
        self._check_fitted(self._fitted_attribute)
        with thread_limit(self.threads):
            index = torch.cat([self._score_encoded(f) for f, _ in self._batches(_as_items(X), "route")])
        return [self.products_[i] for i in index.tolist()]

    def scores_and_products(self, X) -> tuple[np.ndarray, list[str]]:
        """decision_function(X), and the product each image matched (routed once)."""
        scores, _, products = self._score_routed(X, maps=False)
        return scores, products

    def detect_with_products(self, X) -> tuple[Prediction, list[str]]:
        """detect(X), and the product each image matched (routed once)."""
        threshold = self._fitted_threshold()
        scores, maps, products = self._score_routed(X, maps=True)
        return Prediction.from_scores(scores, threshold, maps), products

    def _score(self, X, maps):
        return self._score_routed(X, maps)[:2]

    def _score_routed(self, X, maps):
        images = _as_items(X)
        products = self.route(images)
        index = np.array([self.products_.index(p) for p in products])
        scores = np.empty(len(images))
        out_maps = None
        for k, sub in enumerate(self.detectors_):
            idx = np.flatnonzero(index == k)
            if not len(idx):
                continue
            sub.threads = self.threads
            subset = [images[i] for i in idx]
            if maps and sub.explains:
                explanation = sub.explain(subset)
                s, m = explanation.scores, explanation.localization
                if out_maps is None:
                    out_maps = np.zeros((len(images), *m.shape[1:]), dtype=np.float32)
                out_maps[idx] = (m - self.centre_[k]) / self.spread_[k]
            else:
                s = sub.decision_function(subset)
            scores[idx] = (s - self.centre_[k]) / self.spread_[k]
        return scores, out_maps, products

    # --- model file --------------------------------------------------------------------
    def _get_state(self):
        arrays = {"router/features": self.router_, "router/labels": self.router_labels_.astype(np.int64),
                  "router/mean": self.router_mean_, "router/std": self.router_std_,
                  "scale/centre": self.centre_, "scale/spread": self.spread_}
        subs = []
        for k, sub in enumerate(self.detectors_):
            sub_arrays, sub_meta = sub._get_state()
            arrays.update({f"product{k}/{name}": a for name, a in sub_arrays.items()})
            subs.append({"params": sub.get_params(deep=False), "state": sub_meta})
        return arrays, {"products": self.products_, "detectors": subs}

    def _set_state(self, arrays, meta):
        products, subs = meta.get("products"), meta.get("detectors")
        if not (isinstance(products, list) and all(isinstance(p, str) for p in products) and len(products) >= 2
                and isinstance(subs, list) and len(subs) == len(products)):
            raise ModelFileError("multi-product state needs a list of at least 2 product names and one detector each")
        expect_arrays(arrays, {"router/features": (None, None), "router/labels": (None,), "router/mean": (None,),
                               "router/std": (None,), "scale/centre": (len(products),),
                               "scale/spread": (len(products),)})
        n, d = arrays["router/features"].shape
        expect_arrays(arrays, {"router/labels": (n,), "router/mean": (d,), "router/std": (d,)})
        labels = arrays["router/labels"].astype(np.int64)
        if set(labels.tolist()) != set(range(len(products))):
            raise ModelFileError("router labels do not name every product")
        detectors = []
        cls = detector_class("image", self.detector)
        for k, sub in enumerate(subs):
            if not isinstance(sub, dict) or not isinstance(sub.get("params"), dict) or not isinstance(sub.get("state"), dict):
                raise ModelFileError(f"product {k}'s detector has no params and state")
            check_params(cls, sub["params"])
            detector = cls(**sub["params"])
            detector._check_params()
            prefix = f"product{k}/"
            detector._set_state({name[len(prefix):]: a for name, a in arrays.items() if name.startswith(prefix)},
                                sub["state"])
            detectors.append(detector)
        if (arrays["scale/spread"] <= 0).any():
            raise ModelFileError("product score spreads must be positive")
        self.products_, self.detectors_ = products, detectors
        self.router_, self.router_labels_ = arrays["router/features"].astype(np.float32), labels
        self.router_mean_, self.router_std_ = arrays["router/mean"].astype(np.float64), arrays["router/std"].astype(np.float64)
        self.centre_, self.spread_ = arrays["scale/centre"].astype(np.float64), arrays["scale/spread"].astype(np.float64)


def fit_products(folders: list, template: ImageDetector, threshold: ThresholdStrategy, holdout: float = 0.1,
                 seed: int = 0) -> MultiProduct:
    """One model of the products whose normal images are in `folders` (MVTec layout or a
    folder of images, as `normalcy image fit --data` reads), each named by its folder, every
    product's detector set up like `template`."""
    from pathlib import Path

    from normalcy.image.datasets import load_dataset

    names = [Path(f).name for f in folders]
    if len(set(names)) != len(names):
        raise DataError(f"products are named by their folders, and these repeat a name: {', '.join(map(str, folders))}")
    images, products = [], []
    for folder, name in zip(folders, names):
        train = load_dataset(folder).train
        if not train:
            raise DataError(f"{folder} has no training images: expected normal images in {Path(folder) / 'train' / 'good'}")
        images += train
        products += [name] * len(train)
    return from_template(template, holdout, seed).fit(images, products, threshold)


def from_template(template: ImageDetector, holdout: float = 0.1, seed: int = 0) -> MultiProduct:
    """A MultiProduct whose products' detectors are `template`'s kind with its parameters."""
    params = template.get_params(deep=False)
    return MultiProduct(detector=template.name, holdout=holdout, seed=seed,
                        detector_params={k: v for k, v in params.items() if k not in (*SHARED, "seed")},
                        **{k: params[k] for k in SHARED if k in params})


PRODUCT_COLUMNS = ["dataset", "detector", "image_auroc_separate", "image_auroc_multi", "difference",
                   "routing_accuracy", "n_train", "n_test"]


def benchmark(products: dict, detector: str, params: dict, json_path, seed: int = 0) -> tuple:
    """One MultiProduct of every product against that product's detector alone.

    products: name -> (training images, test images, test labels 1 = anomalous). The
    separate models are the multi-product model's own per-product detectors, fitted on the
    same images and scored on their product's test images alone, so a difference in AUROC is
    the router's doing (and routing accuracy says how often it erred). JSON + Markdown."""
    import time

    from normalcy.core import metrics
    from normalcy.core.benchmark import write_results
    from normalcy.image.benchmark import PACKAGES, _cpu

    accepted = parameter_names(detector_class("image", detector))
    template = build("image", detector, {k: v for k, v in params.items() if k in accepted and v is not None})
    names = sorted(products)
    train = [p for n in names for p in products[n][0]]
    owner = [n for n in names for _ in products[n][0]]
    cpu, start = _cpu(), time.perf_counter()
    model = from_template(template, seed=seed).fit(train, owner)
    fit_seconds, fit_cpu = time.perf_counter() - start, _cpu() - cpu
    records = []
    for k, name in enumerate(model.products_):
        _, test, labels = products[name]
        start = time.perf_counter()
        separate = model.detectors_[k].decision_function(test)
        multi, routed = model.scores_and_products(test)
        a_sep, a_multi = metrics.auroc(np.asarray(labels), separate), metrics.auroc(np.asarray(labels), multi)
        records.append({"dataset": name, "detector": detector, "image_auroc_separate": a_sep,
                        "image_auroc_multi": a_multi, "difference": a_multi - a_sep,
                        "routing_accuracy": float(np.mean([r == name for r in routed])),
                        "misrouted_to": {p: routed.count(p) for p in set(routed) if p != name},
                        "n_train": len(products[name][0]), "n_test": len(test),
                        "score_seconds": time.perf_counter() - start})
    settings = {**params, "fit_seconds": round(fit_seconds, 1), "fit_cpu_seconds": round(fit_cpu, 1), "seed": seed}
    return (*write_results(records, json_path, PACKAGES, "One model for several products", PRODUCT_COLUMNS, settings),
            records)
