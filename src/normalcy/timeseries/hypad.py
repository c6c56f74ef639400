"""HypAD (Flaborea, Prenkaj, Munjal, Sterpa, Aragona, Podo, Galasso, "Are we certain it's
anomalous?", CVPR 2023 Workshops, VAND): TadGAN's encoder, generator and critics
(`normalcy.timeseries.tadgan`), with the reconstruction judged in hyperbolic space, where the
model's certainty can be read off.

A hyperbolic layer (a Möbius linear layer: a linear map of the window, the exponential map at
the origin into the Poincaré ball of curvature -1, a Möbius-added bias) maps a reconstruction
into the ball; the cycle-consistency loss is the Poincaré distance between it and the window's
own point in the ball (10 x, as in the paper's code), trained with the critics' losses. Points near the ball's
edge are ones the model is certain of, points near its centre uncertain: the certainty of a
reconstruction is its norm in the ball. The anomaly score (the paper's "uncertainty"
combination) is the critic term times the reconstruction term times the certainty, so a large
error where the model is uncertain counts for less than the same error where it is certain.

Departures:

- The few maps of the Poincaré ball needed (exponential map at the origin, Möbius addition,
  projection into the ball, the distance) are written here with torch rather than taken from
  geoopt: about twenty lines, and no dependency. The bias is kept as a tangent vector at the
  origin (a plain parameter, mapped into the ball) so that Adam trains it; the paper's code
  keeps it on the ball and trains the encoder and generator with Riemannian Adam.
- The real window's point in the ball is fixed (the exponential map at the origin of the
  window / sqrt(window)); only the reconstruction's goes through the learned layer. In the
  paper's code one learned layer maps both, so shrinking that layer shrinks every distance:
  in our short CPU trainings it did, and every point collapsed to the centre (certainty
  0.005 everywhere, scores worse than chance). With a fixed target the distance can only be
  lowered by reconstructing, and a reconstruction the model cannot pin down is best placed
  towards the centre, which is where hyperbolic uncertainty comes from.
- The window critic judges the Euclidean reconstruction, as TadGAN's does (the paper's code
  gives it the hyperbolic one).
- Causal scoring, the CPU budget and the network sizes are TadGAN's here (see its module
  docs): the window ending at each reading, terms z-scored against the held-out tail of the
  training data (the paper's code z-scores its multivariate errors over the scored series).
- Several variables: each variable's window is mapped into the ball by the same layer, so each
  has its own distance and certainty and a flagged reading names its variables.
"""

from __future__ import annotations

import math

import numpy as np

from normalcy.core.threads import thread_limit
from normalcy.timeseries.deep import CHUNK, _torch, units
from normalcy.timeseries.tadgan import AdversarialReconstruction

BALL_EPS = 4e-3  # how far inside the ball's edge points are kept (geoopt's value for float32)


def expmap0(v):
    """The exponential map at the origin of the Poincaré ball (curvature -1), along the last axis."""
    torch = _torch()
    norm = v.norm(dim=-1, keepdim=True).clamp_min(1e-15)
    return torch.tanh(norm) * v / norm


def mobius_add(x, y):
    """Möbius addition x (+) y in the Poincaré ball (curvature -1)."""
    xy = (x * y).sum(dim=-1, keepdim=True)
    x2 = (x * x).sum(dim=-1, keepdim=True)
    y2 = (y * y).sum(dim=-1, keepdim=True)
    return ((1 + 2 * xy + y2) * x + (1 - x2) * y) / (1 + 2 * xy + x2 * y2).clamp_min(1e-15)


def project(x):
    """Points pulled inside the ball's edge by BALL_EPS (norms at most 1 - BALL_EPS)."""
    torch = _torch()
    norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-15)
    most = 1 - BALL_EPS
    return torch.where(norm > most, x / norm * most, x)


def poincare_distance(u, v):
    """The distance between points of the Poincaré ball (curvature -1), along the last axis."""
    torch = _torch()
    gap = ((u - v) ** 2).sum(dim=-1)
    inside = (1 - (u * u).sum(dim=-1)) * (1 - (v * v).sum(dim=-1))
    return torch.acosh(1 + 2 * gap / inside.clamp_min(1e-15) + 1e-7)


def _hyperbolic_layer(window: int):
    torch = _torch()

    class HyperbolicLinear(torch.nn.Module):
        """A variable's reconstructed window (... x window) -> a point of the Poincaré ball:
        expmap0(W v) (+) expmap0(b). W starts as the map that puts a window where `into_ball`
        puts the real one (I / sqrt(window)), b at 0."""

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.eye(window) / math.sqrt(window))
            self.bias = torch.nn.Parameter(torch.zeros(window))

        def forward(self, v):
            return project(mobius_add(expmap0(v @ self.weight.T), expmap0(self.bias)))

    return HyperbolicLinear()


def into_ball(x):
    """A variable's real window (... x window, scaled readings) as a point of the ball: the
    exponential map at the origin of the window divided by sqrt(window), fixed."""
    return project(expmap0(x / math.sqrt(x.shape[-1])))


class HypAD(AdversarialReconstruction):
    """HypAD (Flaborea et al. 2023): TadGAN with the reconstruction judged in the Poincaré ball;
    the score is the critic term x the hyperbolic reconstruction term x the model's certainty
    (see the module docs for the method and every departure).

    Parameters (defaults in brackets):
    - window [100]: readings per window; patch [5]: readings per LSTM step (window must be a
      multiple); hidden [32]: LSTM units; latent [20]: latent size; channels [64]: critics'
      hidden units; n_critic [5]: critic updates per encoder/generator update.
    - epochs [5], max_steps [400], batch_size [64], learning_rate [5e-4], patience [5],
      validation_fraction [0.2], max_seconds [None]: training budgets (see
      `normalcy.timeseries.deep`).
    - min_train [400], retrain [True], history [10000]: when a stream learned from scratch trains
      and the readings remembered.
    - likelihood [False], averaging [1], likelihood_window [2000], warmup [20]: see
      `TimeSeriesDetector`.
    - threads [1]: CPU threads; seed [0]: seed of the networks and batches.
    """

    name = "hypad"

    def __init__(self, history: int = 10000, likelihood: bool = False, averaging: int = 1,
                 likelihood_window: int = 2000, warmup: int = 20, window: int = 100, patch: int = 5,
                 hidden: int = 32, latent: int = 20, channels: int = 64, n_critic: int = 5, epochs: float = 5,
                 max_steps: int = 400, batch_size: int = 64, learning_rate: float = 5e-4,
                 patience: int | None = 5, validation_fraction: float = 0.2, max_seconds: float | None = None,
                 min_train: int = 400, retrain: bool = True, threads: int | None = 1, seed: int = 0):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)
        self.window = window
        self.patch = patch
        self.hidden = hidden
        self.latent = latent
        self.channels = channels
        self.n_critic = n_critic
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.max_seconds = max_seconds
        self.min_train = min_train
        self.retrain = retrain
        self.threads = threads
        self.seed = seed

    def _extra_nets(self, d):
        return {"hyperbolic": _hyperbolic_layer(self.window)}

    def _reconstruction_loss(self, net, x, rebuilt):
        return poincare_distance(into_ball(x.transpose(1, 2)), net["hyperbolic"](rebuilt.transpose(1, 2))).mean()

    def _terms(self, windows: np.ndarray):
        """Per window and variable: the Poincaré distance of window and reconstruction and the
        reconstruction's certainty (its norm in the ball); and the critic outputs."""
        torch = _torch()
        x, rebuilt, critic = self._forward64(windows)
        with torch.no_grad():
            real, fake = into_ball(x.transpose(1, 2)), self._net64["hyperbolic"](rebuilt.transpose(1, 2))
            distance = poincare_distance(real, fake)
            certainty = fake.norm(dim=-1)
        return distance.numpy(), certainty.numpy(), critic

    def _reference(self, windows):
        distance, _, critic = self._terms(windows.validation.double().numpy())
        mean, spread = units(distance, distance)
        return {"distance_mean": mean, "distance_spread": spread, **self._critic_units(critic)}

    def _stat_shapes(self, d):
        return {"distance_mean": (d,), "distance_spread": (d,), "critic_center": (1,), "critic_spread": (1,)}

    def _window_scores(self, windows):
        distance, certainty, critic = self._terms(windows)
        rec = np.maximum((distance - self._stats["distance_mean"]) / self._stats["distance_spread"], 0.0) + 1.0
        return self._critic_term(critic) * rec * certainty

    def certainty(self, X) -> np.ndarray:
        """The certainty (0 to 1) of the current networks' reconstruction of each window of X
        (the window ending at each reading, within X), per variable: n x d, NaN for the first
        window - 1 readings. Nothing is learned."""
        self._check_fitted("columns_")
        values = self._encode(X).values
        out = np.full(values.shape, np.nan)
        if self._net is None or len(values) < self.span:
            return out
        windows = np.lib.stride_tricks.sliding_window_view(values, self.span, axis=0).transpose(0, 2, 1)
        with thread_limit(self.threads):
            for i in range(0, len(windows), CHUNK):
                out[self.span - 1 + i : self.span - 1 + i + CHUNK] = self._terms(self._scaled(windows[i : i + CHUNK]))[1]
        return out


__all__ = ["HypAD", "expmap0", "into_ball", "mobius_add", "poincare_distance", "project"]
