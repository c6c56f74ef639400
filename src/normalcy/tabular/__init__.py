"""Tables: a score per row for mixed numeric and categorical columns, and which columns made
a row anomalous."""

from normalcy.tabular.adapter import Adapter
from normalcy.tabular.copod import COPOD
from normalcy.tabular.data import TableEncoder, read_table
from normalcy.tabular.ecod import ECOD
from normalcy.tabular.ensemble import MEMBERS, Ensemble
from normalcy.tabular.hbos import HBOS
from normalcy.tabular.iforest import IsolationForest
from normalcy.tabular.knn import KNN, Nearest
from normalcy.tabular.lof import LOF
from normalcy.tabular.pca import PCA

DETECTORS = {"ensemble": Ensemble, "nearest": Nearest, **MEMBERS}
DEFAULT, DEFAULT_CLEAN = "ensemble", "nearest"

__all__ = ["Adapter", "COPOD", "DEFAULT", "DEFAULT_CLEAN", "DETECTORS", "ECOD", "Ensemble", "HBOS", "IsolationForest",
           "KNN", "LOF", "Nearest", "PCA", "TableEncoder", "read_table"]
