"""Time series: anomaly scores per reading, batch and causal, with streaming and NAB scoring."""

from normalcy.timeseries.data import TimeSeries, load_series
from normalcy.timeseries.novelty import RangeNovelty
from normalcy.timeseries.rolling import RollingMAD
from normalcy.timeseries.spectral import SpectralResidual

DETECTORS = {"range-novelty": RangeNovelty, "rolling-mad": RollingMAD, "spectral-residual": SpectralResidual}
DEFAULT = "range-novelty"

__all__ = ["DEFAULT", "DETECTORS", "RangeNovelty", "RollingMAD", "SpectralResidual", "TimeSeries", "load_series"]
