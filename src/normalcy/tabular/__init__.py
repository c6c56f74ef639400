"""Tables: a score per row for mixed numeric and categorical columns, and which columns made
a row anomalous. Each detector registers itself by name (`normalcy.core.registry`):
`detectors("tabular")` lists them."""

# Import order is registration order, which `normalcy table models` and the benchmark follow.
from normalcy.tabular.ensemble import Ensemble  # noqa: I001
from normalcy.tabular.knn import KNN, Nearest
from normalcy.tabular.iforest import IsolationForest
from normalcy.tabular.lof import LOF
from normalcy.tabular.ecod import ECOD
from normalcy.tabular.copod import COPOD
from normalcy.tabular.hbos import HBOS
from normalcy.tabular.pca import PCA
from normalcy.tabular.adapter import Adapter
from normalcy.tabular.data import TableEncoder, read_table

# `normalcy table fit`'s default when training rows may hold anomalies, and with --clean,
# when they are known to be normal.
DEFAULT, DEFAULT_CLEAN = "ensemble", "nearest"

__all__ = ["Adapter", "COPOD", "DEFAULT", "DEFAULT_CLEAN", "ECOD", "Ensemble", "HBOS", "IsolationForest",
           "KNN", "LOF", "Nearest", "PCA", "TableEncoder", "read_table"]
