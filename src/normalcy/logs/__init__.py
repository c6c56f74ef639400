"""System logs: template mining, sessions and windows, and detectors on the groups' events."""

from normalcy.logs.base import Evidence, SequenceDetector
from normalcy.logs.clustering import LogClustering
from normalcy.logs.deeplog import DeepLog
from normalcy.logs.invariants import InvariantsMining
from normalcy.logs.parser import UNSEEN, LogParser
from normalcy.logs.pca import PCA
from normalcy.logs.unseen import UnseenTemplates

DETECTORS = {"pca": PCA, "invariants": InvariantsMining, "clustering": LogClustering, "deeplog": DeepLog,
             "unseen": UnseenTemplates}

__all__ = ["DETECTORS", "DeepLog", "Evidence", "InvariantsMining", "LogClustering", "LogParser", "PCA",
           "SequenceDetector", "UNSEEN", "UnseenTemplates"]
