"""Time series: anomaly scores per reading, batch and causal, with streaming and NAB scoring.

Importing this package registers its detectors (`normalcy.core.registry.detectors("timeseries")`
lists them); a new detector is one module here plus its import below.
"""

from normalcy.timeseries.data import MAX_READING, TimeSeries, load_series
from normalcy.timeseries.forecast import GBTForecast
from normalcy.timeseries.hypad import HypAD
from normalcy.timeseries.iforest import WindowIsolationForest
from normalcy.timeseries.join import SubsequenceJoin
from normalcy.timeseries.matrixprofile import MatrixProfile
from normalcy.timeseries.multiscale import MultiScaleNovelty
from normalcy.timeseries.novelty import RangeNovelty
from normalcy.timeseries.oraclead import OracleAD
from normalcy.timeseries.pca import WindowPCA
from normalcy.timeseries.rolling import RollingMAD
from normalcy.timeseries.spectral import SpectralResidual
from normalcy.timeseries.tadgan import TadGAN
from normalcy.timeseries.themis import ThemisStyle

DEFAULT = "subsequence-join"

__all__ = ["DEFAULT", "MAX_READING", "GBTForecast", "HypAD", "MatrixProfile", "MultiScaleNovelty", "OracleAD",
           "RangeNovelty", "RollingMAD", "SpectralResidual", "SubsequenceJoin", "TadGAN", "ThemisStyle", "TimeSeries",
           "WindowIsolationForest", "WindowPCA", "load_series"]
