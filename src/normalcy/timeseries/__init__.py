"""Time series: anomaly scores per reading, batch and causal, with streaming and NAB scoring."""

from normalcy.timeseries.data import TimeSeries, load_series
from normalcy.timeseries.forecast import GBTForecast
from normalcy.timeseries.matrixprofile import MatrixProfile
from normalcy.timeseries.multiscale import MultiScaleNovelty
from normalcy.timeseries.novelty import RangeNovelty
from normalcy.timeseries.pca import WindowPCA
from normalcy.timeseries.rolling import RollingMAD
from normalcy.timeseries.spectral import SpectralResidual

DETECTORS = {"multiscale-novelty": MultiScaleNovelty, "range-novelty": RangeNovelty, "rolling-mad": RollingMAD, "spectral-residual": SpectralResidual,
             "gbt-forecast": GBTForecast, "matrix-profile": MatrixProfile,
             "window-pca": WindowPCA}
DEFAULT = "multiscale-novelty"

__all__ = ["DEFAULT", "DETECTORS", "GBTForecast", "MatrixProfile", "MultiScaleNovelty", "RangeNovelty", "RollingMAD", "SpectralResidual", "TimeSeries", "WindowPCA",
           "load_series"]
