"""A point-displacement model in the spirit of R3D-AD's point-level correction (Zhou et al.,
"R3D-AD: Reconstruction via Diffusion for 3D Anomaly Detection", ECCV 2024), small enough to
train on a CPU.

R3D-AD learns to move the points of a damaged cloud back onto the normal shape, trained on
normal clouds damaged by its Patch-Gen (patches of points pushed in or out), and scores a
point by how far it has to move. Here, instead of a diffusion model, a small MLP predicts for
each point how far along its normal it lies off the normal surface, from where it is (Fourier
features of its position after registration to the template), how its neighbours lie around
it (their heights over its tangent plane, in units of their mean distance) and how it lies
against the training clouds' registered points (its height over their nearest points, along
their normals, and its distance to them; for a training cloud, against the other training
clouds). Training clouds are damaged in the same way: 1-3 smooth patches per cloud, round or
stretched, pushed in or out; the target is each point's push. The network learns how far a
part may deviate from the others normally (size variation, registration error, noise) and how
far a push goes. A point's score is the predicted push's size. Missing material (a hole)
moves no point, so this model is blind to it by design.

Without the comparison with the training clouds, the network saw patches as sharp as those
of training but missed the broad, smooth bulges of the synthetic defects (their neighbours'
heights differ little from a normal surface's): object AUROC 0.5 on housings with bulges.

Training is a plain seeded torch loop (Adam, full-batch epochs over a pool of damaged copies).
"""

from __future__ import annotations

import math

import numpy as np

from normalcy.cloud.base import CloudDetector, Prepared, _is_int
from normalcy.cloud.features import pca_normals
from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.progress import progress
from normalcy.core.threads import thread_limit

FREQUENCIES = 6  # Fourier features of the position: sin and cos of 2^l * pi * x, l < 6
PUSH_SCALE = 0.05  # targets are learnt in units of 5% of the part's RMS radius
SURFACE_K = 4  # training-cloud points a point's height over the normal surface is averaged over
SURFACE_FEATURES = 2


class Displacement(CloudDetector):
    """Point displacement: how far off the normal surface each point lies, as a small network
    trained on normal clouds with simulated defects predicts it.

    Parameters:

    - hidden: width of the network's hidden layers (default 64).
    - epochs: passes over the damaged training copies (default 30).
    - copies: damaged copies made of each training cloud (default 8).
    - learning_rate: Adam's step size (default 0.003).
    - n_points (2048), sampling ("voxel"), neighbors (16), seed (0), threads (None): as for every
      cloud detector (`CloudDetector`).
    """

    name = "displacement"
    registers = True
    _fitted_attribute = "weights_"

    def __init__(self, hidden: int = 64, epochs: int = 30, copies: int = 8, learning_rate: float = 0.003,
                 n_points: int = 2048, sampling: str = "voxel", neighbors: int = 16, seed: int = 0,
                 threads: int | None = None):
        super().__init__(n_points, sampling, neighbors, seed, threads)
        self.hidden = hidden
        self.epochs = epochs
        self.copies = copies
        self.learning_rate = learning_rate

    def _check_params(self):
        super()._check_params()
        for name, low, high in (("hidden", 4, 1024), ("epochs", 1, 10_000), ("copies", 1, 1000)):
            value = getattr(self, name)
            if not (_is_int(value) and low <= value <= high):
                raise DataError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        rate = self.learning_rate
        if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate <= 1):
            raise DataError(f"learning_rate must be a number in (0, 1], got {rate!r}")

    # --- training ---------------------------------------------------------------------------------
    def _fit_prepared(self, clouds):
        import torch

        from scipy.spatial import cKDTree

        rng = np.random.default_rng(self.seed)
        self.surface_ = np.concatenate([np.hstack([c.xyz, c.normals]) for c in clouds]).astype(np.float32)
        owner = np.repeat(np.arange(len(clouds)), [len(c.xyz) for c in clouds])
        inputs, targets = [], []
        for i, cloud in enumerate(clouds):
            # Against the other training clouds (all of them when there is only one): as a new
            # normal cloud will be scored against all training clouds.
            others = self.surface_[owner != i] if len(clouds) > 1 else self.surface_
            tree = cKDTree(others[:, :3])
            inputs.append(network_inputs(cloud.xyz, cloud.normals, cloud.index, others, tree))
            targets.append(np.zeros(len(cloud.xyz)))
            for _ in range(self.copies):
                moved, normals, push = damage(cloud, rng)
                inputs.append(network_inputs(moved, normals, cloud.index, others, tree))
                targets.append(push / PUSH_SCALE)
        x = torch.from_numpy(np.concatenate(inputs).astype(np.float32))
        y = torch.from_numpy(np.concatenate(targets).astype(np.float32))
        torch.manual_seed(self.seed)
        net = _network(x.shape[1], self.hidden)
        optimiser = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        generator = torch.Generator().manual_seed(self.seed)
        batch = 4096
        steps = max(1, math.ceil(len(x) / batch))
        # One thread, as for the coreset (normalcy.cloud.memory): thousands of small steps, which
        # a second thread only slows down on a busy machine.
        with thread_limit(1):
            self._train(net, optimiser, generator, x, y, batch, steps)
        self.weights_ = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
        self._net = self._surface_tree = None

    def _train(self, net, optimiser, generator, x, y, batch, steps):
        import torch

        for _ in progress(range(self.epochs), desc="train", unit="epoch"):
            order = torch.randperm(len(x), generator=generator)
            for s in range(steps):
                rows = order[s * batch:(s + 1) * batch]
                loss = torch.nn.functional.mse_loss(net(x[rows])[:, 0], y[rows])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()

    # --- scoring ------------------------------------------------------------------------------------
    def _score_prepared(self, cloud: Prepared) -> np.ndarray:
        import torch

        if getattr(self, "_surface_tree", None) is None:
            from scipy.spatial import cKDTree

            self._surface_tree = cKDTree(self.surface_[:, :3])
        x = torch.from_numpy(network_inputs(cloud.xyz, cloud.normals, cloud.index, self.surface_,
                                            self._surface_tree).astype(np.float32))
        with torch.no_grad():
            push = self.net(x)[:, 0].numpy().astype(np.float64)
        return np.abs(push) * PUSH_SCALE

    @property
    def net(self):
        if getattr(self, "_net", None) is None:
            import torch

            width = self.weights_["0.weight"].shape[1]
            net = _network(width, self.hidden)
            net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.weights_.items()})
            self._net = net.eval()
        return self._net

    def _own_state(self):
        return {**self.weights_, "surface": self.surface_}, {}

    def _set_own_state(self, arrays, meta):
        width = 3 + 6 * FREQUENCIES + self.neighbors + 1 + SURFACE_FEATURES
        h = self.hidden
        shapes = {"0.weight": (h, width), "0.bias": (h,), "2.weight": (h, h), "2.bias": (h,),
                  "4.weight": (1, h), "4.bias": (1,), "surface": (None, 6)}
        expect_arrays(arrays, shapes)
        extra = sorted(set(arrays) - set(shapes))
        if extra:
            raise ModelFileError(f"unexpected model arrays: {', '.join(extra)}")
        if len(arrays["surface"]) < SURFACE_K:
            raise ModelFileError(f"model array 'surface' has {len(arrays['surface'])} points, fewer than {SURFACE_K}")
        self.surface_ = arrays["surface"].astype(np.float32)
        self.weights_ = {k: arrays[k].astype(np.float32) for k in shapes if k != "surface"}
        self._net = self._surface_tree = None


def _network(width: int, hidden: int):
    import torch

    return torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, hidden),
                               torch.nn.SiLU(), torch.nn.Linear(hidden, 1))


def network_inputs(xyz: np.ndarray, normals: np.ndarray, index: np.ndarray, surface: np.ndarray, tree
                   ) -> np.ndarray:
    """Per point: its position, Fourier features of it, its neighbours' heights over its
    tangent plane (in units of their mean distance, nearest first) and their mean, then its
    height over the SURFACE_K nearest `surface` points (registered training points with their
    normals, n x 6; `tree` a KD-tree of their positions) along their normals, and its mean
    distance to them, both in units of PUSH_SCALE."""
    scales = np.pi * 2.0 ** np.arange(FREQUENCIES)
    angles = (xyz[:, :, None] * scales).reshape(len(xyz), -1)
    offsets = xyz[index] - xyz[:, None]
    spacing = np.maximum(np.linalg.norm(offsets, axis=2).mean(axis=1, keepdims=True), 1e-12)
    heights = (offsets * normals[:, None]).sum(axis=2) / spacing
    distance, nearest = tree.query(xyz, SURFACE_K)
    above = ((xyz[:, None] - surface[nearest, :3]) * surface[nearest, 3:]).sum(axis=2).mean(axis=1)
    return np.concatenate([xyz, np.sin(angles), np.cos(angles), heights, heights.mean(axis=1, keepdims=True),
                           above[:, None] / PUSH_SCALE, distance.mean(axis=1, keepdims=True) / PUSH_SCALE], axis=1)


def damage(cloud: Prepared, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A copy of a prepared cloud with 1-3 smooth patches pushed along the normals (radius 5-30%
    of the part's RMS radius, height 2-10%; half of them stretched 2-5 times along a tangent):
    the moved points, their re-estimated normals and each point's push."""
    xyz, normals = cloud.xyz, cloud.normals
    push = np.zeros(len(xyz))
    for _ in range(int(rng.integers(1, 4))):
        c = int(rng.integers(len(xyz)))
        radius, height = rng.uniform(0.05, 0.3), rng.uniform(0.02, 0.1) * rng.choice([-1.0, 1.0])
        d = xyz - xyz[c]
        distance = np.linalg.norm(d, axis=1)
        if rng.random() < 0.5:
            tangent = np.cross(normals[c], rng.standard_normal(3))
            tangent /= max(np.linalg.norm(tangent), 1e-12)
            along = d @ tangent
            distance = np.sqrt(np.maximum(distance ** 2 - along ** 2, 0) + (along / rng.uniform(2, 5)) ** 2)
        push += height * np.where(distance < radius, (1 - (distance / radius) ** 2) ** 2, 0.0)
    moved = xyz + normals * push[:, None]
    # Normals of the damaged surface, as scoring estimates them; signs from the undamaged ones.
    fresh = pca_normals(moved, cloud.index)
    fresh *= np.where((fresh * normals).sum(axis=1) < 0, -1.0, 1.0)[:, None]
    return moved, fresh, push
