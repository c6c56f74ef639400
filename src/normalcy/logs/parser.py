"""Template mining with Drain3: each log line's content becomes an event id.

Masking runs first, as drain3's masking instructions do (each mask's regex replaced by
``<NAME>`` in turn), but per distinct token and cached: log tokens repeat so much that almost
every token is masked once, which keeps the parser well above 20,000 lines/s. The masks (block
ids, IPs, hex numbers, paths, numbers) therefore never span whitespace. Masks other than the
default ones come from a user or a model file and run within a time bound
(`normalcy.logs.patterns`); their names must be plain words.

State: the clusters (id, template tokens, size) go to the model file as JSON and arrays;
loading rebuilds Drain's prefix tree from them (drain3's own jsonpickle persistence is never
used). Right after `fit` the tree is rebuilt the same way, so a parser matches identically
before and after a save.

`fit` learns templates; `transform` only matches (``Drain.match``) and gives `UNSEEN` (0) to a
line that fits no known template.
"""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np
from drain3.drain import Drain, LogCluster

from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.progress import progress
from normalcy.logs.patterns import Pattern

UNSEEN = 0
PARAM = "<*>"

# Applied in order to each token, the more specific first; a number is NUM even when it could be a hex ID.
MASKS: tuple[tuple[str, str], ...] = (
    ("BLK", r"blk_-?\d+"),
    ("IP", r"(?<![\w.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?::\d+)?(?![\w.])"),
    ("HEX", r"(?<![\w])0[xX][0-9a-fA-F]+(?![\w])"),
    ("PATH", r"(?<![\w.])(?:/[\w.\-]+)+/?"),
    ("NUM", r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.])"),
    ("ID", r"(?<![\w])[0-9a-fA-F]{8,}(?![\w])"),
)

_CACHE_LIMIT = 200_000


def _mask(name: str, pattern: str):
    """(regex, "<NAME>") of one mask: the defaults on `re`, any other time-bounded."""
    if not (isinstance(name, str) and re.fullmatch(r"\w{1,40}", name)):
        raise DataError(f"mask name {name!r} must be a word of at most 40 letters, digits or _")
    if (name, pattern) in MASKS:
        return re.compile(pattern), f"<{name}>"
    return Pattern(pattern, f"mask {name}"), f"<{name}>"


class LogParser:
    """Drain3 template mining with cached token masking; see the module doc."""

    def __init__(self, sim_th: float = 0.4, depth: int = 4, max_children: int = 100, masks=MASKS):
        self.sim_th = sim_th
        self.depth = depth
        self.max_children = max_children
        self.masks = tuple(tuple(m) for m in masks)
        self._masks = [_mask(name, pattern) for name, pattern in self.masks]
        self._token_cache: dict[str, str] = {}
        self._match_cache: dict[str, int] = {}
        self.drain = self._new_drain()

    def _new_drain(self) -> Drain:
        if not 0.0 < self.sim_th <= 1.0 or self.depth < 3 or self.max_children < 2:
            raise DataError(f"parser settings out of range: sim_th={self.sim_th} (0..1], depth={self.depth} (>= 3), "
                            f"max_children={self.max_children} (>= 2)")
        return Drain(sim_th=self.sim_th, depth=self.depth, max_children=self.max_children, param_str=PARAM)

    # --- masking -------------------------------------------------------------------------
    def mask(self, content: str) -> str:
        cache = self._token_cache
        out = []
        for token in content.split():
            masked = cache.get(token)
            if masked is None:
                if len(cache) > _CACHE_LIMIT:
                    cache.clear()
                masked = token
                for regex, replacement in self._masks:
                    masked = regex.sub(replacement, masked)
                cache[token] = masked
            out.append(masked)
        return " ".join(out)

    # --- learning and matching -----------------------------------------------------------
    def fit(self, contents: Iterable[str]) -> np.ndarray:
        """Learn templates from the lines' contents; returns their event ids (as matched after
        learning, so lines learned early get their final template)."""
        contents = list(contents)
        drain = self.drain
        for content in progress(contents, desc="mining templates", unit="line"):
            drain.add_log_message(self.mask(content))
        self._rebuild()
        return self.transform(contents)

    def transform(self, contents: Iterable[str]) -> np.ndarray:
        """Event ids of lines by matching only; `UNSEEN` (0) for a line no template fits."""
        cache = self._match_cache
        ids = []
        for content in contents:
            masked = self.mask(content)
            found = cache.get(masked)
            if found is None:
                cluster = self.drain.match(masked, full_search_strategy="fallback")
                found = UNSEEN if cluster is None else cluster.cluster_id
                if len(cache) > _CACHE_LIMIT:
                    cache.clear()
                cache[masked] = found
            ids.append(found)
        return np.asarray(ids, dtype=np.int64)

    @property
    def n_templates(self) -> int:
        return len(self.drain.id_to_cluster)

    def template(self, event_id: int) -> str:
        if event_id == UNSEEN:
            return "(unseen template)"
        cluster = self.drain.id_to_cluster.get(int(event_id))
        return cluster.get_template() if cluster is not None else f"(unknown event {event_id})"

    def templates(self) -> dict[int, str]:
        return {cid: c.get_template() for cid, c in sorted(self.drain.id_to_cluster.items())}

    # --- state ---------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        clusters = sorted(self.drain.id_to_cluster.values(), key=lambda c: c.cluster_id)
        arrays = {"parser.ids": np.array([c.cluster_id for c in clusters], dtype=np.int64),
                  "parser.sizes": np.array([c.size for c in clusters], dtype=np.int64)}
        meta = {"sim_th": self.sim_th, "depth": self.depth, "max_children": self.max_children,
                "masks": [list(m) for m in self.masks],
                "templates": [list(c.log_template_tokens) for c in clusters]}
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> "LogParser":
        try:
            masks = meta["masks"]
            if not (isinstance(masks, list) and all(isinstance(m, list) and len(m) == 2 for m in masks)):
                raise ValueError("masks must be [name, regex] pairs")
            parser = cls(float(meta["sim_th"]), int(meta["depth"]), int(meta["max_children"]),
                         [(str(n), str(p)) for n, p in masks])
            templates = meta["templates"]
            ids, sizes = arrays["parser.ids"], arrays["parser.sizes"]
        except (KeyError, TypeError, ValueError, OverflowError, DataError) as exc:
            raise ModelFileError(f"model state: the log parser's settings are missing or malformed ({exc})") from None
        if (ids.ndim != 1 or sizes.shape != ids.shape or not isinstance(templates, list) or len(templates) != len(ids)
                or not all(isinstance(t, list) and all(isinstance(s, str) for s in t) for t in templates)
                or len(set(ids.tolist())) != len(ids) or (len(ids) and ids.min() <= UNSEEN)):
            raise ModelFileError("model state: the log parser's templates do not match its cluster ids")
        for cid, size, tokens in zip(ids.tolist(), sizes.tolist(), templates):
            cluster = LogCluster(tokens, int(cid))
            cluster.size = int(size)
            parser.drain.id_to_cluster[int(cid)] = cluster
        parser._rebuild()
        return parser

    def _rebuild(self) -> None:
        """A fresh prefix tree from the current templates, added in id order: what a loaded
        parser builds, so matching does not depend on the order lines were learned in."""
        clusters = self.drain.id_to_cluster
        drain = self._new_drain()
        for cid in sorted(clusters):
            drain.id_to_cluster[cid] = clusters[cid]
            drain.add_seq_to_prefix_tree(drain.root_node, clusters[cid])
        drain.clusters_counter = max(clusters, default=0)
        self.drain = drain
        self._match_cache.clear()
