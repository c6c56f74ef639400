"""CAR, collaborative alerts ranking (after Lin, Chen, Cao, Tang, Zhang, Cheng and Li, "Collaborative
Alert Ranking for Anomaly Detection", CIKM 2018): rank low-level categorical alerts so that true
alerts rise and recurring false positives sink, from two kinds of correlation and the analysts'
verdicts.

- temporal: each stream's alerts (a host's, a user's, a detector's) under a hierarchical
  back-off model of short- and long-range dependencies (`normalcy.alerts.sequence`): the
  surprise, -log2 P(type | the stream's recent alerts and its whole history), is high for an
  alert out of the stream's routine;
- content: APE entity embeddings of the alert's categorical attributes, the entities and the
  type (`normalcy.events.ape`, Chen et al. 2016, as in CAR): an unusual combination scores high.
  APE judges a value never seen as it judges the history's rare values (its unseen slot); in a
  column whose history values all recur that slot learned nothing and the value adds nothing
  to the sum, so novelty is left to the temporal part (docs/alerts.md);
- the raw score of the detector that raised the alert, where the table has one;
- corroboration, where the table names each alert's source (`source_column`, e.g. the
  detector or sensor): how many distinct sources alerted on the alert's stream within `gap`
  seconds of it, before or after. The temporal part takes an alert that repeats its stream's
  recent types as routine, which is right for one source repeating itself (a node's burst of
  the same error) and wrong for independent sources agreeing on one entity; this part gives
  that agreement its weight. It looks at the alerts ranked together, so an alert rises when
  a later one corroborates it.

Each part becomes its percentile among the history's alerts, and the alert's prior score is
their mean. Analyst verdicts (1 = true alert, 0 = false positive) then move every alert that
shares a pattern with a reviewed one, from the coarse pattern to the fine: its type, its
stream and type, its whole signature (all entities and the type). At each, with tp true
verdicts of n, the score becomes (s * prior_strength + tp) / (prior_strength + n), the mean of
a Beta prior centred on the score before; so a pattern the analysts keep dismissing sinks,
a confirmed one rises, and a pattern nobody reviewed keeps its prior. This is where the method
departs from the paper: CAR learns its alert and pattern ranking in one optimisation; here the
temporal and content parts are combined by percentile and the verdicts by Beta smoothing,
which needs no labels to start and no tuning per data set.

Verdicts come with the history (a verdict column in the table `fit` learns from; they are kept
in the model) or at ranking time (`rank(..., feedback=...)`, not kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from normalcy.alerts.base import AlertRanker
from normalcy.alerts.data import NO_VERDICT, Alerts, read_alerts
from normalcy.alerts.sequence import StreamModel
from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.registry import check_params, detector_class
from normalcy.core.results import Explanation
from normalcy.events.data import read_events
from normalcy.logs.base import check_number

PATTERNS = ("type", "stream+type", "signature")
PARTS = ("sequence", "content", "score", "corroboration")
MAX_REFERENCE = 10_001  # history percentiles kept per part: quantiles beyond this many alerts
SEP = "\x1f"  # joins the fields of a pattern key (a control character no entity name holds)


@dataclass
class Ranking:
    """Per alert (input order): the final score, the prior before verdicts, each part's
    percentile (alerts x parts), the surprise in bits and its context depth, and the verdict
    patterns that moved it."""

    scores: np.ndarray
    prior: np.ndarray
    parts: tuple[str, ...]
    percentiles: np.ndarray
    surprise: np.ndarray
    depth: np.ndarray
    moved_by: list[list[str]]


class CAR(AlertRanker):
    """CAR (Lin et al. 2018): temporal surprise of each alert in its stream, APE content
    incompatibility of its attributes and the raw detector score, combined by percentile and
    moved by analyst verdicts on shared patterns.

    Parameters:
        time_column: seconds since 1970 or ISO 8601 dates ("time").
        type_column: the alert type, e.g. the rule or template that fired ("type").
        entity_columns: the categorical attributes (None: every column but time, type, score,
            verdict and id).
        stream_column: the entity whose alerts form one stream (None: the first entity column).
        score_column: the raw detector score, higher = more suspicious (None: no raw score).
        source_column: the entity column that names who raised the alert (a detector, a
            sensor), for the corroboration part (None: no such part). Only for independent
            sources: a column that is one source's attribute (a component) is not one.
        verdict_column: analyst verdicts, 1/0 or empty ("verdict"); optional in any table.
        id_column: an alert id, never an entity (None).
        order: recent alerts of the stream in the short-range context, 0 to 8 (2).
        gap: a silence of more than this many seconds ends the short-range context; None:
            never (3600).
        discount: the absolute discount d of the back-off model, in (0, 1) (0.75).
        prior_strength: how many verdicts weigh as much as the score before them, > 0 (2.0).
        parts: the parts the prior score averages, of "sequence", "content", "score" and
            "corroboration" (None: every part the model has).
        content_params: parameters of the APE content model (None: APE's defaults).
        seed: seed of the content model (0).
    """

    name = "car"

    def __init__(self, time_column: str = "time", type_column: str = "type", entity_columns: list[str] | None = None,
                 stream_column: str | None = None, score_column: str | None = None, source_column: str | None = None,
                 verdict_column: str = "verdict",
                 id_column: str | None = None, order: int = 2, gap: float | None = 3600.0, discount: float = 0.75,
                 prior_strength: float = 2.0, parts: list[str] | None = None, content_params: dict | None = None,
                 seed: int = 0):
        self.time_column = time_column
        self.type_column = type_column
        self.entity_columns = entity_columns
        self.stream_column = stream_column
        self.score_column = score_column
        self.source_column = source_column
        self.verdict_column = verdict_column
        self.id_column = id_column
        self.order = order
        self.gap = gap
        self.discount = discount
        self.prior_strength = prior_strength
        self.parts = parts
        self.content_params = content_params
        self.seed = seed

    # --- public contract -----------------------------------------------------------------
    def fit(self, X, y=None) -> "CAR":
        """Learn the streams' routine and the attributes' embeddings from a history of alerts;
        verdicts in it are kept as feedback."""
        self._check_params()
        columns, stream = self._resolve_columns(X)
        alerts = read_alerts(X, self.time_column, self.type_column, columns, stream, self.score_column,
                             self.verdict_column)
        self.columns_, self.stream_ = columns, stream
        self.types_ = sorted(set(alerts.types))
        self.streams_ = sorted(set(alerts.streams))
        self.scored_ = alerts.scores is not None
        types, streams = self._codes(alerts)
        # The history's surprises on arrival set the percentiles, as the queue's are taken.
        self.sequence_, surprise, depth = StreamModel(self.order, self.gap, self.discount).fit(
            streams, types, alerts.times, len(self.types_))
        self.content_ = self._new_content().fit_frame(alerts.content(columns, self.type_column), alerts.name)
        parts = self._parts(alerts, (surprise, depth))[0]
        self.references_ = {name: _reference(values) for name, values in parts.items()}
        self.feedback_ = _tables(self._keys(alerts), alerts.verdicts)
        self.n_alerts_ = len(alerts)
        return self

    def decision_function(self, X) -> np.ndarray:
        """The score of each alert, in [0, 1], higher = more likely a true alert."""
        return self.rank(X).scores

    def explain(self, X) -> Explanation:
        """Per alert: `parts` are the ranking's parts ("sequence", "content", "score" where the
        model has a raw score, "corroboration" where it has a source column), `contributions`
        their percentiles among the history's alerts, `evidence` one readable line per part (and
        per verdict pattern that moved it)."""
        return self.explain_ranking(X)[0]

    def explain_ranking(self, X, feedback=None) -> tuple[Explanation, "Ranking"]:
        """`explain` with the verdicts of `feedback` (see `rank`), and the ranking itself."""
        alerts = self.read(X)
        ranking = self.rank(alerts, feedback)
        content = self.content_.explain_frame(alerts.content(self.columns_, self.type_column), alerts.name)
        corroborated = self._corroboration(alerts) if self.source_column is not None else None
        evidence = []
        for i in range(len(alerts)):
            lines = [self._sequence_reason(alerts, i, ranking),
                     f"content: least compatible pair {content.evidence[i][0]} "
                     f"(above {ranking.percentiles[i, 1]:.0%} of the history)"]
            if self.scored_:
                lines.append(f"score: raw score {alerts.scores[i]:.6g} (above {ranking.percentiles[i, 2]:.0%} of the "
                             "history)")
            if self.source_column is not None:
                lines.append(f"corroboration: {int(corroborated[i])} distinct {self.source_column} value(s) "
                             f"alerted on {self.stream_}={alerts.streams[i]} within the gap (above "
                             f"{ranking.percentiles[i, -1]:.0%} of the history)")
            evidence.append(lines + ranking.moved_by[i])
        return Explanation(ranking.scores, ranking.parts, ranking.percentiles, evidence), ranking

    def read(self, X, need_score: bool = True) -> Alerts:
        """The checked alerts of a table, with the fitted columns (and the raw score, where the
        model has one and `need_score`)."""
        self._check_fitted("sequence_")
        if isinstance(X, Alerts):
            return X
        return read_alerts(X, self.time_column, self.type_column, self.columns_, self.stream_,
                           self.score_column if self.scored_ else None, self.verdict_column, need_score)

    def rank(self, X, feedback=None) -> Ranking:
        """Scores of the alerts X with the model's verdicts plus those in `feedback` (a table of
        alerts with a verdict column; or None) and in X's own verdict column; an alert of X
        with a verdict scores as it (1 or 0)."""
        alerts = self.read(X)
        parts, surprise, depth = self._parts(alerts)
        names = tuple(parts)
        percentiles = np.stack([_percentile(self.references_[n], parts[n]) for n in names], axis=1)
        prior = percentiles[:, [names.index(n) for n in self._prior_parts()]].mean(axis=1)
        tables = {level: dict(table) for level, table in self.feedback_.items()}
        extra = [alerts] + ([self.read(feedback, need_score=False)] if feedback is not None else [])
        for source in extra:
            if source.verdicts is not None:
                _merge(tables, _tables(self._keys(source), source.verdicts))
        scores, moved_by = self._apply(prior, self._keys(alerts), tables)
        if alerts.verdicts is not None:
            reviewed = alerts.verdicts != NO_VERDICT
            scores[reviewed] = alerts.verdicts[reviewed]
            for i in np.flatnonzero(reviewed):
                moved_by[i] = [f"reviewed: {'a true alert' if alerts.verdicts[i] else 'a false positive'}"]
        return Ranking(scores, prior, names, percentiles, surprise, depth, moved_by)

    # --- parts ---------------------------------------------------------------------------
    def _parts(self, alerts: Alerts, replayed: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Each part's raw values (surprise in bits, APE score, raw score), the surprise and its
        context depth; `replayed`: the surprise and depth already taken."""
        if replayed is None:
            types, streams = self._codes(alerts)
            replayed = self.sequence_.replay(streams, types, alerts.times)
        surprise, depth = replayed
        parts = {"sequence": surprise,
                 "content": self.content_.decision_frame(alerts.content(self.columns_, self.type_column), alerts.name)}
        if self.scored_:
            parts["score"] = alerts.scores
        if self.source_column is not None:
            parts["corroboration"] = self._corroboration(alerts)
        return parts, surprise, depth

    def _corroboration(self, alerts: Alerts) -> np.ndarray:
        """Per alert, the distinct sources among its stream's alerts within `gap` seconds of it
        (the whole stream when gap is None), itself included."""
        sources = alerts.entities[:, self.columns_.index(self.source_column)]
        gap = np.inf if self.gap is None else float(self.gap)
        out = np.ones(len(alerts))
        for members in pd.Series(np.arange(len(alerts))).groupby(alerts.streams, sort=False).indices.values():
            if len(members) == 1:
                continue
            members = members[np.argsort(alerts.times[members], kind="stable")]
            times = alerts.times[members]
            lo = np.searchsorted(times, times - gap, side="left")
            hi = np.searchsorted(times, times + gap, side="right")
            names = sources[members]
            out[members] = [len(set(names[a:b])) for a, b in zip(lo.tolist(), hi.tolist())]
        return out

    def _codes(self, alerts: Alerts) -> tuple[np.ndarray, np.ndarray]:
        """Type and stream codes: 1-based in the fitted vocabularies, and past them for the
        values the history never had (one new code per new value)."""
        return _coded(self.types_, alerts.types), _coded(self.streams_, alerts.streams)

    def _keys(self, alerts: Alerts) -> dict[str, np.ndarray]:
        """Per pattern level, each alert's key."""
        stream = alerts.streams.astype(str)
        types = alerts.types.astype(str)
        signature = types.copy()
        for j in range(alerts.entities.shape[1]):
            signature = np.char.add(np.char.add(signature, SEP), alerts.entities[:, j].astype(str))
        return {"type": types, "stream+type": np.char.add(np.char.add(stream, SEP), types), "signature": signature}

    def _apply(self, prior: np.ndarray, keys: dict[str, np.ndarray], tables: dict[str, dict]
               ) -> tuple[np.ndarray, list[list[str]]]:
        scores = prior.copy()
        moved_by: list[list[str]] = [[] for _ in range(len(prior))]
        beta = float(self.prior_strength)
        for level in PATTERNS:
            table = tables.get(level, {})
            if not table:
                continue
            for i, key in enumerate(keys[level]):
                found = table.get(key)
                if found is not None:
                    tp, n = found
                    scores[i] = (beta * scores[i] + tp) / (beta + n)
                    moved_by[i].append(f"feedback: {tp} of {n} reviewed alerts with the same "
                                       f"{_level_name(level, self.stream_)} were true")
        return scores, moved_by

    def _sequence_reason(self, alerts: Alerts, i: int, ranking: Ranking) -> str:
        depth = int(ranking.depth[i])
        where = f"{self.stream_}={alerts.streams[i]}"
        how = ("a type never seen in the history" if depth == 0 else
               f"never raised by {where} in the history" if depth == 1 else
               f"raised by {where} before" if depth == 2 else
               f"raised by {where} after the same last {depth - 2} alert(s) before")
        return (f"sequence: {self.type_column}={alerts.types[i]!r} {how}; P = {2.0 ** -ranking.surprise[i]:.3g} "
                f"(above {ranking.percentiles[i, 0]:.0%} of the history)")

    # --- columns and parameters ---------------------------------------------------------------
    def _prior_parts(self) -> list[str]:
        available = (["sequence", "content"] + (["score"] if self.scored_ else [])
                     + (["corroboration"] if self.source_column is not None else []))
        if self.parts is None:
            return available
        if "score" in self.parts and not self.scored_:
            raise DataError('CAR part "score" needs a raw score: set score_column')
        return list(self.parts)

    def _resolve_columns(self, X) -> tuple[list[str], str]:
        if self.entity_columns is not None:
            columns = [self.entity_columns] if isinstance(self.entity_columns, str) else list(self.entity_columns)
        else:
            frame, _ = read_events(X)
            reserved = {self.time_column, self.type_column, self.score_column, self.verdict_column, self.id_column}
            columns = [str(c) for c in frame.columns if c not in reserved]
        if not columns:
            raise DataError("an alert needs at least one entity column (host, user, node ...) besides "
                            f"{self.time_column!r} and {self.type_column!r}")
        stream = self.stream_column or columns[0]
        if stream not in columns:
            columns = [*columns, stream]
        if self.source_column is not None:
            if self.source_column == stream:
                raise DataError(f"CAR source_column {self.source_column!r} is the stream column: corroboration "
                                "counts the sources that alert on one stream, so they must differ")
            if self.source_column not in columns:
                columns = [*columns, self.source_column]
        return columns, stream

    def _new_content(self):
        params = dict(self.content_params or {})
        cls = detector_class("events", "ape")
        check_params(cls, params)
        params.setdefault("seed", self.seed)
        params["columns"] = [*self.columns_, self.type_column]
        return cls(**params)

    def _check_params(self) -> None:
        for name in ("time_column", "type_column", "verdict_column"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise DataError(f"CAR {name} must be a column name, got {getattr(self, name)!r}")
        for name in ("stream_column", "score_column", "source_column", "id_column"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise DataError(f"CAR {name} must be a column name or None, got {value!r}")
        columns = self.entity_columns
        if columns is not None and not isinstance(columns, str) and not (
                isinstance(columns, (list, tuple)) and columns and all(isinstance(c, str) for c in columns)):
            raise DataError(f"CAR entity_columns must be a list of column names or None, got {columns!r}")
        named = [self.time_column, self.type_column]
        if columns is not None:
            named += [columns] if isinstance(columns, str) else list(columns)
        if len(set(named)) < len(named):
            raise DataError(f"CAR: the time, type and entity columns must all differ, got {named}")
        check_number("CAR", "order", self.order, 0, 8, integer=True)
        if self.gap is not None:
            check_number("CAR", "gap (seconds)", self.gap, 0.0, 1e12, low_open=True)
        check_number("CAR", "discount", self.discount, 0.0, 1.0, low_open=True, high_open=True)
        check_number("CAR", "prior_strength", self.prior_strength, 0.0, 1e9, low_open=True)
        check_number("CAR", "seed", self.seed, 0, 2**32 - 1, integer=True)
        if self.parts is not None and not (isinstance(self.parts, (list, tuple)) and self.parts and all(
                p in PARTS for p in self.parts) and len(set(self.parts)) == len(self.parts)):
            raise DataError(f'CAR parts must be a list of "sequence", "content", "score" and "corroboration", got '
                            f'{self.parts!r}')
        if self.parts is not None and "corroboration" in self.parts and not self.source_column:
            raise DataError('CAR part "corroboration" needs the alerts\' source: set source_column')
        if self.parts is not None and "score" in self.parts and not self.score_column:
            raise DataError('CAR part "score" needs a raw score: set score_column')
        if self.content_params is not None and not isinstance(self.content_params, dict):
            raise DataError(f"CAR content_params must be a dict of APE parameters, got {self.content_params!r}")
        if self.content_params and "columns" in self.content_params:
            raise DataError("CAR content_params cannot set columns: the content model embeds the entity columns "
                            "and the type")
        check_params(detector_class("events", "ape"), dict(self.content_params or {}))

    # --- model file ----------------------------------------------------------------------
    def _get_state(self):
        self._check_fitted("sequence_")
        content_arrays, content_meta = self.content_._get_state()
        arrays = {**self.sequence_.state(), **{f"content.{k}": v for k, v in content_arrays.items()},
                  **{f"reference.{k}": v for k, v in self.references_.items()}}
        feedback = {level: sorted([key, tp, n] for key, (tp, n) in table.items())
                    for level, table in self.feedback_.items()}
        meta = {"columns": self.columns_, "stream": self.stream_, "types": self.types_, "streams": self.streams_,
                "scored": self.scored_, "content": content_meta, "feedback": feedback, "n_alerts": self.n_alerts_}
        return arrays, meta

    def _set_state(self, arrays, meta):
        columns, stream, types, streams = (meta.get(k) for k in ("columns", "stream", "types", "streams"))
        if not (_strings(columns) and columns and isinstance(stream, str) and stream in columns
                and _strings(types) and _strings(streams) and isinstance(meta.get("scored"), bool)
                and isinstance(meta.get("content"), dict) and isinstance(meta.get("n_alerts"), int)):
            raise ModelFileError("model state: the alert columns, vocabularies or content model are missing")
        if self.type_column in columns or self.time_column in columns:
            raise ModelFileError("model state: the entity columns include the time or type column")
        if self.source_column is not None and (self.source_column not in columns or self.source_column == stream):
            raise ModelFileError("model state: the source column is not an entity column besides the stream")
        self.columns_, self.stream_, self.types_, self.streams_ = list(columns), stream, list(types), list(streams)
        self.scored_ = meta["scored"]
        if self.scored_ and not self.score_column:
            raise ModelFileError("model state: a raw score was fitted, but score_column is not set")
        self.sequence_ = StreamModel.from_state(arrays, self.order, self.gap, self.discount, len(types), len(streams))
        content = self._new_content()
        content._set_state({k[len("content."):]: v for k, v in arrays.items() if k.startswith("content.")},
                           meta["content"])
        if content.columns_ != [*self.columns_, self.type_column]:
            raise ModelFileError("model state: the content model's columns differ from the alert columns")
        self.content_ = content
        names = (["sequence", "content"] + (["score"] if self.scored_ else [])
                 + (["corroboration"] if self.source_column is not None else []))
        expect_arrays(arrays, {f"reference.{n}": (None,) for n in names})
        if any(arrays[f"reference.{n}"].size == 0 or np.any(np.diff(arrays[f"reference.{n}"]) < 0) for n in names):
            raise ModelFileError("model state: a reference distribution is empty or not sorted")
        self.references_ = {n: arrays[f"reference.{n}"] for n in names}
        self.feedback_ = _read_feedback(meta.get("feedback"))
        self.n_alerts_ = meta["n_alerts"]


def _coded(vocabulary: list[str], values: np.ndarray) -> np.ndarray:
    codes = pd.Index(vocabulary, dtype=object).get_indexer(values) + 1
    new = codes == 0
    if new.any():
        codes[new] = len(vocabulary) + 1 + np.unique(values[new].astype(str), return_inverse=True)[1]
    return codes


def _reference(values: np.ndarray) -> np.ndarray:
    """The sorted values, or MAX_REFERENCE quantiles of them."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    if values.size > MAX_REFERENCE:
        values = np.quantile(values, np.linspace(0.0, 1.0, MAX_REFERENCE))
    return values


def _percentile(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mid-rank percentile of each value among the reference values, in [0, 1]."""
    below = np.searchsorted(reference, values, side="left")
    upto = np.searchsorted(reference, values, side="right")
    return (below + upto) / (2.0 * reference.size)


def _tables(keys: dict[str, np.ndarray], verdicts: np.ndarray | None) -> dict[str, dict[str, tuple[int, int]]]:
    """Per pattern level: key -> (true verdicts, verdicts)."""
    tables: dict[str, dict[str, tuple[int, int]]] = {level: {} for level in PATTERNS}
    if verdicts is None:
        return tables
    reviewed = np.flatnonzero(verdicts != NO_VERDICT)
    for level in PATTERNS:
        table = tables[level]
        for i in reviewed:
            tp, n = table.get(keys[level][i], (0, 0))
            table[keys[level][i]] = (tp + int(verdicts[i]), n + 1)
    return tables


def _merge(into: dict, extra: dict) -> None:
    for level, table in extra.items():
        target = into.setdefault(level, {})
        for key, (tp, n) in table.items():
            old = target.get(key, (0, 0))
            target[key] = (old[0] + tp, old[1] + n)


def _read_feedback(data) -> dict[str, dict[str, tuple[int, int]]]:
    if not isinstance(data, dict) or set(data) != set(PATTERNS):
        raise ModelFileError(f"model state: feedback must hold the pattern levels {', '.join(PATTERNS)}")
    tables = {}
    for level, rows in data.items():
        if not isinstance(rows, list) or not all(
                isinstance(r, list) and len(r) == 3 and isinstance(r[0], str)
                and all(isinstance(v, int) and not isinstance(v, bool) for v in r[1:]) and 0 <= r[1] <= r[2]
                and r[2] >= 1 for r in rows):
            raise ModelFileError(f"model state: feedback for {level} must be [key, true verdicts, verdicts] rows")
        tables[level] = {key: (tp, n) for key, tp, n in rows}
    return tables


def _level_name(level: str, stream: str) -> str:
    return {"type": "type", "stream+type": f"{stream} and type", "signature": "entities and type"}[level]


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
