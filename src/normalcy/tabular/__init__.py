"""Tables: a score per row for mixed numeric and categorical columns, and which columns made
a row anomalous."""

from normalcy.tabular.adapter import Adapter
from normalcy.tabular.copod import COPOD
from normalcy.tabular.data import TableEncoder, read_table
from normalcy.tabular.ecod import ECOD
from normalcy.tabular.ensemble import MEMBERS, Ensemble
from normalcy.tabular.hbos import HBOS
from normalcy.tabular.iforest import IsolationForest
from normalcy.tabular.knn import KNN
from normalcy.tabular.lof import LOF
from normalcy.tabular.pca import PCA

DETECTORS = {"ensemble": Ensemble, **MEMBERS}

__all__ = ["Adapter", "COPOD", "DETECTORS", "ECOD", "Ensemble", "HBOS", "IsolationForest", "KNN", "LOF", "PCA",
           "TableEncoder", "read_table"]
