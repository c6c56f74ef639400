"""The alert jobs behind the CLI: rank a queue into a file (whole or not at all), and judge a
ranking against known verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.alerts.car import CAR
from normalcy.alerts.data import NO_VERDICT, read_verdicts
from normalcy.alerts.evaluate import ndcg, precision_at_k
from normalcy.core.errors import DataError
from normalcy.tabular.data import output_format
from normalcy.tabular.workflow import write_table_atomic

OUTPUT_COLUMNS = ("rank", "score", "prior", "reasons")


def rank_to_file(ranker: CAR, data, out: str | Path, feedback=None) -> pd.DataFrame:
    """The queue `data` sorted best first: its columns plus `rank` (1 = look first), `score`,
    `prior` (before verdicts), one percentile column per part and `reasons` (the evidence,
    joined by " | "); written to `out` (.csv, .tsv or .parquet) through a temporary file."""
    out = Path(out)
    output_format(out)
    alerts = ranker.read(data)
    frame = alerts.frame
    parts = [f"{p}_percentile" for p in ("sequence", "content", *(["score"] if ranker.scored_ else []),
                                         *(["corroboration"] if ranker.source_column else []))]
    taken = [c for c in (*OUTPUT_COLUMNS, *parts) if c in frame.columns]
    if taken:
        raise DataError(f"{alerts.name} already has column(s) {', '.join(taken)}; rename them before ranking")
    explanation, ranking = ranker.explain_ranking(alerts, feedback)
    result = frame.assign(score=ranking.scores, prior=ranking.prior,
                          **{name: ranking.percentiles[:, j] for j, name in enumerate(parts)},
                          reasons=[" | ".join(r) for r in explanation.evidence])
    order = np.argsort(-ranking.scores, kind="stable")
    result = result.iloc[order].reset_index(drop=True)
    result.insert(0, "rank", np.arange(1, len(result) + 1))
    write_table_atomic(result, out)
    return result


def evaluate(ranker: CAR, data, truth_column: str, ks: tuple[int, ...] = (10, 50), feedback=None) -> dict:
    """Precision at each k and NDCG of the ranking of `data` against its column of known
    verdicts (1 = true alert, 0 = false positive; every row needs one)."""
    alerts = ranker.read(data)
    if truth_column not in alerts.frame.columns:
        raise DataError(f"{alerts.name}: no column {truth_column!r} of known verdicts; found "
                        f"{', '.join(map(str, alerts.frame.columns))}")
    if truth_column == ranker.verdict_column:
        raise DataError(f"the known verdicts ({truth_column!r}) must not be the ranker's feedback column: rename it")
    y = read_verdicts(alerts.frame[truth_column], truth_column, alerts.name)
    if (y == NO_VERDICT).any():
        row = alerts.frame.index[np.flatnonzero(y == NO_VERDICT)[0]]
        raise DataError(f"{alerts.name}: column {truth_column!r} is empty at row {row}; evaluation needs a verdict "
                        "per alert")
    scores = ranker.rank(alerts, feedback).scores
    result = {"ranker": ranker.name, "data": alerts.name, "n_alerts": int(len(y)), "n_true": int(y.sum())}
    for k in ks:
        result[f"precision_at_{k}"] = precision_at_k(y, scores, k)
    result["ndcg"] = ndcg(y, scores)
    return result
