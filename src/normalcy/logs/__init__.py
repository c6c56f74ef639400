"""System logs: template mining, sessions and windows, and detectors on the groups' events.
Importing this package registers the sequence detectors (`normalcy.core.registry.detectors
("logs")`); `LogModel` (normalcy.logs.model) wraps one with a parser and a grouping. The
semantic detectors (`semantic-seq`, `semantic-bag`) also read each event's template text
(`normalcy.logs.semantic.Events`)."""

# Registration order is the order `normalcy logs models` and the benchmark list them.
from normalcy.logs.invariants import InvariantsMining  # isort: skip
from normalcy.logs.pca import PCA  # isort: skip
from normalcy.logs.clustering import LogClustering  # isort: skip
from normalcy.logs.deeplog import DeepLog  # isort: skip
from normalcy.logs.unseen import UnseenTemplates  # isort: skip
from normalcy.logs.semseq import SemanticSequence  # isort: skip
from normalcy.logs.sembag import SemanticBag  # isort: skip
from normalcy.logs.entity_sequence import EntitySequence  # isort: skip
from normalcy.logs.base import SequenceDetector
from normalcy.logs.model import LogModel  # a model file names it: loading imports only this package
from normalcy.logs.parser import UNSEEN, LogParser
from normalcy.logs.semantic import Events, SemanticDetector, with_templates

DEFAULT = "invariants"

__all__ = ["DEFAULT", "DeepLog", "EntitySequence", "Events", "InvariantsMining", "LogClustering", "LogModel", "LogParser", "PCA",
           "SemanticBag", "SemanticDetector", "SemanticSequence", "SequenceDetector", "UNSEEN", "UnseenTemplates",
           "with_templates"]
