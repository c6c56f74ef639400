"""TadGAN (Geiger, Liu, Alnegheimish, Cuesta-Infante, Veeramachaneni, "TadGAN: Time Series Anomaly
Detection Using Generative Adversarial Networks", IEEE BigData 2020).

An LSTM encoder E maps a window x to a latent z, an LSTM generator G maps z back to a window;
two Wasserstein critics judge windows (Cx: real x against G of random z) and latents (Cz: E(x)
against random z), with gradient penalties, and a cycle-consistency loss (10 x the squared
error of G(E(x)) against x) ties E and G together. Training alternates `n_critic` critic
updates with one encoder/generator update, Adam, learning rate 5e-4, batch 64, windows of 100
readings scaled to [-1, 1] by the training readings' range, as the paper does.

The anomaly score combines the reconstruction error with the critic score, as the paper does:
the reconstruction error of the window's last `score_window` readings by one of the paper's
three measures (`error`: "point", the mean absolute difference; "area", the absolute difference
of the areas under the two curves; "dtw", their dynamic-time-warping distance, the paper's
best), z-scored and clipped at 0 (then + 1), and the critic's output on the window, its absolute
z-score (+ 1); `combination` "mult" multiplies them, "sum" weighs them by `alpha` (Orion's
"mult" and "sum", less the constant 1).

Departures, each for a reason:

- Causal: the paper reconstructs every reading from the up to 100 windows that cover it (their
  median) and z-scores errors and critic outputs over the whole scored series, which needs the
  future. Here reading t is scored from the one window that ends at it, and measures are
  z-scored against the held-out tail of the training data (`normalcy.timeseries.deep`), so
  scores are final when a reading arrives. The paper's smoothing of the error series (a
  centred rolling mean) is left out for the same reason; the error over the last
  `score_window` readings is a trailing smoothing already.
- CPU budget: the LSTMs read and write the window in patches of `patch` readings (20 steps of 5
  readings instead of 100 steps of 1), and are narrower (32 units; the paper has 100 and 64),
  and the window critic is a perceptron with two hidden layers of `channels` units, as in
  HypAD's published code (the paper's four convolutions of 64 channels cost 20 times more per
  step on a CPU, most of it in the gradient penalty).
  Training is `epochs` passes (a few, not the paper's 2,000 epochs) with early stopping on the
  held-out windows' reconstruction error: minutes on a CPU rather than hours on a GPU.
- DTW uses the absolute difference as its cost, over the `score_window` readings.
- Several variables: one window holds all of them (as Orion does); the reconstruction error is
  per variable, the critic score is shared, so a flagged reading names its variables.
"""

from __future__ import annotations

import numpy as np

from normalcy.core.errors import DataError
from normalcy.timeseries.base import check_int
from normalcy.timeseries.deep import WindowNetDetector, _check_number, _torch, gradient_penalty, units

ERRORS = ("point", "area", "dtw")
COMBINATIONS = ("mult", "sum")
CYCLE_WEIGHT = 10.0  # the paper's weight of the cycle-consistency loss
PENALTY_WEIGHT = 10.0  # WGAN-GP's weight of the gradient penalty


def _nets():
    """The network classes (defined on first use: torch is imported only when needed)."""
    torch = _torch()
    nn = torch.nn

    class Encoder(nn.Module):
        """Window (B x W x d) -> latent (B x latent): a bidirectional LSTM over patches."""

        def __init__(self, d, window, patch, hidden, latent):
            super().__init__()
            self.steps = window // patch
            self.lstm = nn.LSTM(patch * d, hidden, batch_first=True, bidirectional=True)
            self.out = nn.Linear(self.steps * 2 * hidden, latent)

        def forward(self, x):
            h, _ = self.lstm(x.reshape(x.shape[0], self.steps, -1))
            return self.out(h.flatten(1))

    class Generator(nn.Module):
        """Latent (B x latent) -> window (B x W x d) in [-1, 1]."""

        def __init__(self, d, window, patch, hidden, latent):
            super().__init__()
            self.steps, self.window, self.d = window // patch, window, d
            self.inp = nn.Linear(latent, self.steps * hidden)
            self.lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
            self.out = nn.Linear(2 * hidden, patch * d)

        def forward(self, z):
            h, _ = self.lstm(self.inp(z).reshape(z.shape[0], self.steps, -1))
            return torch.tanh(self.out(h)).reshape(z.shape[0], self.window, self.d)

    class CriticX(nn.Module):
        """Window (B x W x d) -> score (B): how real the window looks."""

        def __init__(self, d, window, channels):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(window * d, channels), nn.LeakyReLU(0.2),
                                     nn.Linear(channels, channels), nn.LeakyReLU(0.2), nn.Linear(channels, 1))

        def forward(self, x):
            return self.net(x.flatten(1))[:, 0]

    class CriticZ(nn.Module):
        """Latent (B x latent) -> score (B)."""

        def __init__(self, latent, hidden):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(latent, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                     nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

        def forward(self, z):
            return self.net(z)[:, 0]

    return Encoder, Generator, CriticX, CriticZ


class AdversarialReconstruction(WindowNetDetector):
    """What TadGAN and HypAD share: the encoder, generator and two critics, and their training.
    A subclass says how a reconstruction is compared with its window (`_reconstruction_loss`,
    which may use networks of its own from `_extra_nets`) and scores windows."""

    scaling = "range"

    def _build(self, d):
        torch = _torch()
        Encoder, Generator, CriticX, CriticZ = _nets()
        nets = {"encoder": Encoder(d, self.window, self.patch, self.hidden, self.latent),
                "generator": Generator(d, self.window, self.patch, self.hidden, self.latent),
                "critic_x": CriticX(d, self.window, self.channels),
                "critic_z": CriticZ(self.latent, self.channels)}
        return torch.nn.ModuleDict({**nets, **self._extra_nets(d)})

    def _extra_nets(self, d) -> dict:
        return {}

    def _reconstruction_loss(self, net, x, rebuilt):
        """The mean reconstruction loss of a batch (what the cycle consistency minimises)."""
        return ((rebuilt - x) ** 2).mean()

    def _fit_net(self, net, windows, engine):
        torch = _torch()
        critics = [p for k in ("critic_x", "critic_z") for p in net[k].parameters()]
        makers = [p for k, m in net.items() if k not in ("critic_x", "critic_z") for p in m.parameters()]
        opt_critics = torch.optim.Adam(critics, lr=self.learning_rate, betas=(0.9, 0.999))
        opt_makers = torch.optim.Adam(makers, lr=self.learning_rate, betas=(0.9, 0.999))
        encoder, generator, cx, cz = (net[k] for k in ("encoder", "generator", "critic_x", "critic_z"))

        def step(i):
            for p in critics:
                p.requires_grad_(True)
            for _ in range(self.n_critic):
                x = windows.sample(self.batch_size)
                z = torch.randn(len(x), self.latent)
                with torch.no_grad():
                    fake_x, fake_z = generator(z), encoder(x)
                loss = (cx(fake_x).mean() - cx(x).mean() + PENALTY_WEIGHT * gradient_penalty(cx, x, fake_x)
                        + cz(fake_z).mean() - cz(z).mean() + PENALTY_WEIGHT * gradient_penalty(cz, z, fake_z))
                opt_critics.zero_grad()
                loss.backward()
                opt_critics.step()
            for p in critics:  # the makers' update leaves the critics as they are
                p.requires_grad_(False)
            x = windows.sample(self.batch_size)
            z = torch.randn(len(x), self.latent)
            latent = encoder(x)
            loss = (-cx(generator(z)).mean() - cz(latent).mean()
                    + CYCLE_WEIGHT * self._reconstruction_loss(net, x, generator(latent)))
            opt_makers.zero_grad()
            loss.backward()
            opt_makers.step()
            return loss.item()

        def validate():
            x = windows.validation
            return -float(self._reconstruction_loss(net, x, generator(encoder(x))))

        try:
            return engine(net, step, validate)
        finally:
            for p in critics:
                p.requires_grad_(True)

    def _forward64(self, windows: np.ndarray):
        """Reconstruction (n x W x d) and critic output (n) of float64 windows, and the tensors."""
        torch = _torch()
        net = self._net64
        with torch.no_grad():
            x = self._tensor(windows)
            rebuilt = net["generator"](net["encoder"](x))
            critic = net["critic_x"](x)
        return x, rebuilt, critic.numpy()

    def _critic_units(self, critic: np.ndarray) -> dict[str, np.ndarray]:
        """Orion's critic units: the mean of the held-out outputs between their quartiles, and
        their standard deviation."""
        low, high = np.quantile(critic, [0.25, 0.75])
        middle = critic[(critic >= low) & (critic <= high)]
        center = middle.mean() if len(middle) else critic.mean()
        _, spread = units(critic, critic)
        return {"critic_center": np.array([center]), "critic_spread": np.atleast_1d(spread)}

    def _critic_term(self, critic: np.ndarray) -> np.ndarray:
        """|z| + 1 of critic outputs (n) in the held-out units: n x 1."""
        return (np.abs(critic - self._stats["critic_center"][0]) / self._stats["critic_spread"][0] + 1.0)[:, None]

    def _check_params(self):
        super()._check_params()
        for name in ("patch", "hidden", "latent", "channels"):
            check_int(self, name, 1, 4096)
        check_int(self, "n_critic", 1, 100)
        if self.window % self.patch:
            raise DataError(f"window ({self.window}) must be a multiple of patch ({self.patch})")
        if self.window < 4:
            raise DataError(f"window must be at least 4 readings, got {self.window}")


class TadGAN(AdversarialReconstruction):
    """TadGAN (Geiger et al. 2020): reconstruction error of the window ending at each reading,
    combined with the critic's score (see the module docs for the method and every departure).

    Parameters (defaults in brackets):
    - window [100]: readings per window; patch [5]: readings per LSTM step (window must be a
      multiple); hidden [32]: LSTM units; latent [20]: latent size; channels [64]: critics' hidden units.
    - error ["dtw"]: "point", "area" or "dtw" reconstruction error; score_window [10]: readings
      at the end of the window it covers.
    - combination ["mult"]: "mult" or "sum" of the error and critic terms; alpha [0.5]: the
      error's weight in "sum".
    - n_critic [5]: critic updates per encoder/generator update.
    - epochs [5], max_steps [500], batch_size [64], learning_rate [5e-4], patience [5],
      validation_fraction [0.2], max_seconds [None]: training budgets (see
      `normalcy.timeseries.deep`); a step is one encoder/generator update.
    - min_train [400], retrain [True]: when a stream learned from scratch trains (see
      `normalcy.timeseries.deep`).
    - history [10000]: readings remembered; the networks train on them.
    - likelihood [False], averaging [1], likelihood_window [2000], warmup [20]: NAB's anomaly
      likelihood and the warm-up (see `TimeSeriesDetector`).
    - threads [1]: CPU threads (the networks are small: more threads rarely help, and on a busy
      machine they cost more than they give); seed [0]: seed of the networks and batches.
    """

    name = "tadgan"

    def __init__(self, history: int = 10000, likelihood: bool = False, averaging: int = 1,
                 likelihood_window: int = 2000, warmup: int = 20, window: int = 100, patch: int = 5,
                 hidden: int = 32, latent: int = 20, channels: int = 64, error: str = "dtw",
                 score_window: int = 10, combination: str = "mult", alpha: float = 0.5, n_critic: int = 5,
                 epochs: float = 5, max_steps: int = 500, batch_size: int = 64, learning_rate: float = 5e-4,
                 patience: int | None = 5, validation_fraction: float = 0.2, max_seconds: float | None = None,
                 min_train: int = 400, retrain: bool = True, threads: int | None = 1, seed: int = 0):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)
        self.window = window
        self.patch = patch
        self.hidden = hidden
        self.latent = latent
        self.channels = channels
        self.error = error
        self.score_window = score_window
        self.combination = combination
        self.alpha = alpha
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

    def _errors(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reconstruction error (n x d) of the last `score_window` readings, and critic outputs."""
        x, rebuilt, critic = self._forward64(windows)
        k = self.score_window
        return reconstruction_error(x[:, -k:].numpy(), rebuilt[:, -k:].numpy(), self.error), critic

    def _reference(self, windows):
        error, critic = self._errors(windows.validation.double().numpy())
        mean, spread = units(error, error)
        return {"error_mean": mean, "error_spread": spread, **self._critic_units(critic)}

    def _stat_shapes(self, d):
        return {"error_mean": (d,), "error_spread": (d,), "critic_center": (1,), "critic_spread": (1,)}

    def _window_scores(self, windows):
        error, critic = self._errors(windows)
        rec = np.maximum((error - self._stats["error_mean"]) / self._stats["error_spread"], 0.0) + 1.0
        crit = self._critic_term(critic)
        if self.combination == "mult":
            return rec * crit - 1.0
        return (1 - self.alpha) * (crit - 1.0) + self.alpha * (rec - 1.0)

    def _check_params(self):
        super()._check_params()
        if self.error not in ERRORS:
            raise DataError(f"error must be one of {', '.join(ERRORS)}, got {self.error!r}")
        if self.combination not in COMBINATIONS:
            raise DataError(f"combination must be one of {', '.join(COMBINATIONS)}, got {self.combination!r}")
        check_int(self, "score_window", 2, self.window)
        _check_number(self, "alpha", 0, 1)


def reconstruction_error(x: np.ndarray, y: np.ndarray, kind: str) -> np.ndarray:
    """TadGAN's reconstruction errors of windows x against their reconstructions y (n x k x d):
    "point", the mean absolute difference; "area", the absolute difference of the areas under
    the curves (trapezoids, unit spacing); "dtw", the dynamic-time-warping distance with the
    absolute difference as cost. n x d."""
    if kind == "point":
        return np.abs(x - y).mean(axis=1)
    if kind == "area":
        e = x - y
        return np.abs(e[:, 1:-1].sum(axis=1) + 0.5 * (e[:, 0] + e[:, -1]))
    return dtw(x, y)


def dtw(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Dynamic-time-warping distance of each pair of sequences along axis 1 (n x k x ...), with
    |x_i - y_j| as cost; the dynamic programme runs over all pairs at once, elementwise."""
    k = x.shape[1]
    cost = np.abs(x[:, :, None] - y[:, None, :])  # n x k x k x ...
    total = np.full((k + 1, k + 1) + (x.shape[0],) + x.shape[2:], np.inf)
    total[0, 0] = 0.0
    for i in range(1, k + 1):
        for j in range(1, k + 1):
            best = np.minimum(np.minimum(total[i - 1, j], total[i, j - 1]), total[i - 1, j - 1])
            total[i, j] = cost[:, i - 1, j - 1] + best
    return total[k, k]


__all__ = ["AdversarialReconstruction", "TadGAN", "dtw", "reconstruction_error"]
