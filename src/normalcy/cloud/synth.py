"""Synthetic machined parts and defects, with per-point ground truth (synthetic data: no
public 3D anomaly set can be downloaded here; Anomaly-ShapeNet's own defects are synthetic too).

A part is constructive solid geometry made of boxes, cylinders and threaded cylinders
(unions of positive primitives, less negative ones such as bores). Its surface is sampled by
area with numpy: each primitive's surface is sampled at one density and a sample is kept
where it lies on the part's boundary (solid just inside it along its normal, none just outside). docs/cloud.md gives the measured comparison with
trimesh. Every part kind varies: each dimension by 2% (one sigma), features' positions by a
little, then scanner-like noise (0.05 mm along the normal, 0.02 mm across) and a random pose
(any rotation, a shift). Sizes are in millimetres.

Defects, in Anomaly-ShapeNet's kinds, are made on the clean surface before noise and pose:

- bulge / concavity: a smooth bump pushed out / in along the normal (radius 6-10 mm, height
  2-3.5 mm); truth: points moved by over 10% of the height;
- crack: a groove 15-25 mm long, 2.4-3.6 mm wide, 1.5-2.5 mm deep; truth: the groove's points;
- hole: a ball of radius 4-7 mm around a surface point is cut out and nothing is seen inside;
  truth: the rim, points within 1.5 mm of the cut;
- broken: an edge is chipped off (the part within 7-11 mm of an edge point, beyond a plane 3-5 mm
  under it) and the fracture faces are sampled, rough; truth: the fracture faces.

These sizes (a few per cent of a part's size, as Anomaly-ShapeNet's visible defects) are the
second set tried: defects half as large (height 0.8-1.6 mm, holes of 3-5 mm) gave object
AUROCs of 0.5-0.8 with every detector here (docs/cloud.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from normalcy.core.errors import DataError

PARTS = ("cylinder", "bracket", "housing", "shaft", "flange")
DEFECTS = ("bulge", "concavity", "crack", "hole", "broken")
SIZE_JITTER = 0.02
NOISE_NORMAL, NOISE_TANGENT = 0.05, 0.02


# --- primitives, each in its own frame: rotation R (local -> world) and origin t ----------------
@dataclass
class Primitive:
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def to_local(self, p: np.ndarray) -> np.ndarray:
        return (p - self.origin) @ self.rotation

    def to_world(self, p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return p @ self.rotation.T + self.origin, n @ self.rotation.T


@dataclass
class Box(Primitive):
    half: np.ndarray = field(default_factory=lambda: np.ones(3))

    def area(self) -> float:
        a, b, c = self.half
        return 8 * (a * b + b * c + c * a)

    def sample(self, m: int, rng: np.random.Generator):
        a = self.half
        faces = np.array([a[1] * a[2], a[1] * a[2], a[0] * a[2], a[0] * a[2], a[0] * a[1], a[0] * a[1]])
        face = rng.choice(6, m, p=faces / faces.sum())
        axis, sign = face // 2, np.where(face % 2, 1.0, -1.0)
        p = rng.uniform(-1, 1, (m, 3)) * a
        p[np.arange(m), axis] = sign * a[axis]
        n = np.zeros((m, 3))
        n[np.arange(m), axis] = sign
        return self.to_world(p, n)

    def inside(self, p: np.ndarray, eps: float) -> np.ndarray:
        return np.all(np.abs(self.to_local(p)) < self.half + eps, axis=1)


@dataclass
class Cylinder(Primitive):
    """Along the local z axis from 0 to height; `radius_at` is the surface radius at (theta, z)."""

    radius: float = 1.0
    height: float = 1.0
    pitch: float = 0.0  # a thread: 60-degree-like triangular profile of this pitch and `depth`
    depth: float = 0.0

    def radius_at(self, theta: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Radius and its derivatives by theta and z."""
        if not self.pitch:
            zero = np.zeros_like(z)
            return zero + self.radius, zero, zero
        s = (z - self.pitch * theta / (2 * np.pi)) / self.pitch
        frac = s - np.floor(s)
        tri = 1 - np.abs(2 * frac - 1)  # 0 at the crest, 1 at the root
        slope = np.where(frac < 0.5, 2.0, -2.0)  # d tri / d s
        r = self.radius - self.depth * tri
        return r, self.depth * slope / (2 * np.pi), -self.depth * slope / self.pitch

    def area(self) -> float:
        stretch = np.sqrt(1 + (2 * self.depth / self.pitch) ** 2) if self.pitch else 1.0
        return 2 * np.pi * self.radius * self.height * stretch + 2 * np.pi * self.radius ** 2

    def sample(self, m: int, rng: np.random.Generator):
        side_area = self.area() - 2 * np.pi * self.radius ** 2
        n_side = rng.binomial(m, side_area / self.area())
        theta, z = rng.uniform(0, 2 * np.pi, n_side), rng.uniform(0, self.height, n_side)
        r, r_t, r_z = self.radius_at(theta, z)
        c, s = np.cos(theta), np.sin(theta)
        d_theta = np.stack([r_t * c - r * s, r_t * s + r * c, np.zeros_like(r)], axis=1)
        d_z = np.stack([r_z * c, r_z * s, np.ones_like(r)], axis=1)
        normal = np.cross(d_theta, d_z)
        element = np.linalg.norm(normal, axis=1)
        # Area element |d_theta x d_z| varies on a thread's flanks: thin the samples by it.
        keep = rng.uniform(0, element.max() if len(element) else 1, n_side) < element
        side = np.stack([r * c, r * s, z], axis=1)[keep]
        side_n = (normal / element[:, None])[keep]
        n_cap = m - n_side
        theta, rho = rng.uniform(0, 2 * np.pi, n_cap), self.radius * np.sqrt(rng.uniform(0, 1, n_cap))
        top = rng.uniform(0, 1, n_cap) < 0.5
        z = np.where(top, self.height, 0.0)
        cap = np.stack([rho * np.cos(theta), rho * np.sin(theta), z], axis=1)
        cap_n = np.zeros((n_cap, 3))
        cap_n[:, 2] = np.where(top, 1.0, -1.0)
        on_cap = rho < self.radius_at(theta, z)[0]  # a thread's end face is cut by its profile
        return self.to_world(np.concatenate([side, cap[on_cap]]), np.concatenate([side_n, cap_n[on_cap]]))

    def inside(self, p: np.ndarray, eps: float) -> np.ndarray:
        q = self.to_local(p)
        rho, theta = np.hypot(q[:, 0], q[:, 1]), np.arctan2(q[:, 1], q[:, 0])
        return (rho < self.radius_at(theta, q[:, 2])[0] + eps) & (q[:, 2] > -eps) & (q[:, 2] < self.height + eps)


@dataclass
class Part:
    """Positives united, negatives cut out."""

    positives: list
    negatives: list = field(default_factory=list)

    def inside(self, p: np.ndarray) -> np.ndarray:
        inside = np.zeros(len(p), dtype=bool)
        for prim in self.positives:
            inside |= prim.inside(p, 0.0)
        for prim in self.negatives:
            inside &= ~prim.inside(p, 0.0)
        return inside

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n points uniformly on the surface by area, with outward normals."""
        density = 1.6 * n / sum(p.area() for p in self.positives)
        while True:
            pts, nrm = self._surface(density, rng)
            if len(pts) >= n:
                keep = rng.choice(len(pts), n, replace=False)
                return pts[keep], nrm[keep]
            density *= 1.3 * n / max(len(pts), 1)

    def _surface(self, density: float, rng: np.random.Generator):
        """Samples of every primitive's surface (a negative's facing into the part) kept where
        they are on the part's boundary: just inside along the normal is solid, just outside
        is not. That drops faces inside the part, such as where two primitives meet. A face
        two positives share on the outside is kept from the first only."""
        eps, tol = 1e-4, 1e-6
        out_p, out_n = [], []
        for group, sign in ((self.positives, 1.0), (self.negatives, -1.0)):
            for i, prim in enumerate(group):
                p, nrm = prim.sample(rng.poisson(density * prim.area()), rng)
                nrm = sign * nrm
                keep = self.inside(p - eps * nrm) & ~self.inside(p + eps * nrm)
                for other in group[:i]:
                    keep &= ~other.inside(p, tol)
                out_p.append(p[keep])
                out_n.append(nrm[keep])
        return np.concatenate(out_p), np.concatenate(out_n)


# --- part kinds -------------------------------------------------------------------------------------
def _axis_to(direction: str) -> np.ndarray:
    """Rotation taking local z to the world axis `direction`."""
    return {"z": np.eye(3), "x": np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float),
            "y": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)}[direction]


def _box(lo, hi) -> Box:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return Box(origin=(lo + hi) / 2, half=(hi - lo) / 2)


def _cyl(base, radius, height, axis="z", **thread) -> Cylinder:
    return Cylinder(rotation=_axis_to(axis), origin=np.asarray(base, float), radius=radius, height=height, **thread)


def make_part(kind: str, rng: np.random.Generator) -> Part:
    """One part of `kind` with its natural variation (each dimension by 2%, one sigma)."""
    j = lambda v: v * (1 + SIZE_JITTER * rng.standard_normal())  # noqa: E731
    if kind == "cylinder":  # a stepped round: body, collar, spigot
        r1, h1, r2, h2, r3, h3 = j(20), j(36), j(24), j(6), j(11), j(20)
        return Part([_cyl((0, 0, 0), r1, h1), _cyl((0, 0, h1), r2, h2), _cyl((0, 0, h1 + h2), r3, h3)])
    if kind == "bracket":  # an L of plates with two bolt holes in the base and one in the upright
        length, width, thick, height = j(60), j(40), j(6), j(50)
        holes = [_cyl((x, y, -1), j(4), thick + 2) for x, y in ((j(25), j(11)), (j(45), width - j(11)))]
        holes.append(_cyl((-1, width / 2, j(34)), j(5), thick + 2, axis="x"))
        return Part([_box((0, 0, 0), (length, width, thick)), _box((0, 0, 0), (thick, width, height))], holes)
    if kind == "housing":  # a block with a through bore and a boss on top
        a, b, c = j(60), j(40), j(30)
        bore = _cyl((-1, b / 2, c / 2), j(10), a + 2, axis="x")
        boss = _cyl((j(42), b / 2, c), j(8), j(8))
        return Part([_box((0, 0, 0), (a, b, c)), boss], [bore])
    if kind == "shaft":  # a threaded shaft with a round head
        r, length = j(8), j(50)
        head = _cyl((0, 0, 0), j(13), j(8))
        thread = _cyl((0, 0, head.height), r, length, pitch=j(3.0), depth=j(1.2))
        return Part([head, thread])
    if kind == "flange":  # a disc with a hub, a central bore and six bolt holes
        r, t, hub_r, hub_h, bore_r = j(35), j(8), j(18), j(12), j(10)
        holes = [_cyl((j(26) * np.cos(a), j(26) * np.sin(a), -1), j(3.5), t + 2)
                 for a in np.arange(6) * np.pi / 3 + 0.02 * rng.standard_normal()]
        return Part([_cyl((0, 0, 0), r, t), _cyl((0, 0, t), hub_r, hub_h)],
                    [_cyl((0, 0, -1), bore_r, t + hub_h + 2), *holes])
    raise DataError(f"unknown part kind {kind!r}; expected one of {', '.join(PARTS)}")


# --- defects ------------------------------------------------------------------------------------------
def add_defect(part: Part, points: np.ndarray, normals: np.ndarray, kind: str, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clean surface with one defect of `kind`: points, normals and 0/1 labels per point."""
    n = len(points)
    centre = int(rng.integers(n))
    c, nc = points[centre], normals[centre]
    distance = np.linalg.norm(points - c, axis=1)
    if kind in ("bulge", "concavity"):
        radius, height = rng.uniform(6, 10), rng.uniform(2.0, 3.5) * (1 if kind == "bulge" else -1)
        # Points on other faces within the radius (across an edge) move along their own normals.
        near = distance < radius
        profile = np.where(near, (1 - (distance / radius) ** 2) ** 2, 0.0)
        moved = points + normals * (height * profile)[:, None]
        return moved, normals, (profile > 0.1).astype(np.uint8)
    if kind == "crack":
        length, width, depth = rng.uniform(15, 25), rng.uniform(1.2, 1.8), rng.uniform(1.5, 2.5)
        tangent = np.cross(nc, rng.standard_normal(3))
        tangent /= np.linalg.norm(tangent)
        along = np.clip((points - c) @ tangent, -length / 2, length / 2)
        off = np.linalg.norm(points - (c + along[:, None] * tangent), axis=1)
        # Only the face the crack runs on: points whose normal agrees with the centre's.
        groove = (off < width) & (normals @ nc > 0.7)
        profile = np.where(groove, depth * (1 - off / width), 0.0)
        return points - normals * profile[:, None], normals, groove.astype(np.uint8)
    if kind == "hole":
        radius = rng.uniform(4, 7)
        keep = distance >= radius
        rim = (distance < radius + 1.5)[keep]
        return points[keep], normals[keep], rim.astype(np.uint8)
    if kind == "broken":
        return _chip(part, points, normals, rng)
    raise DataError(f"unknown defect kind {kind!r}; expected one of {', '.join(DEFECTS)}")


def _chip(part: Part, points: np.ndarray, normals: np.ndarray, rng: np.random.Generator):
    """Chip off an edge: a ball of radius R around an edge point, beyond a plane `depth` under
    the edge (its normal the bisector of the two faces), is removed; the new faces (on the
    plane and on the ball) are sampled at the surface's density, rough."""
    tree = cKDTree(points)
    pairs = tree.query_ball_point(points[: min(len(points), 4000)], r=1.5)
    # An edge: a neighbour's normal turns by 80-135 degrees (not a thin wall's far side).
    turns = [normals[nb] @ normals[j] for j, nb in enumerate(pairs)]
    edges = [i for i, dots in enumerate(turns) if ((dots < 0.2) & (dots > -0.7)).any()]
    if not edges:
        raise DataError("this part has no edge to chip")
    i = edges[int(rng.integers(len(edges)))]
    dots = np.where(turns[i] > -0.7, turns[i], np.inf)
    other = normals[pairs[i][int(np.argmin(dots))]]
    u = normals[i] + other
    u /= np.linalg.norm(u)
    c, radius, depth = points[i], rng.uniform(7, 11), rng.uniform(3, 5)
    removed = (np.linalg.norm(points - c, axis=1) < radius) & ((points - c) @ u > -depth)
    density = len(points) / _surface_area(part, rng)
    # New faces: the plane disc and the ball's cap, each kept where it lies inside the solid.
    e1 = np.cross(u, [1.0, 0, 0] if abs(u[0]) < 0.9 else [0, 1.0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    m = rng.poisson(density * np.pi * radius ** 2 * 3)
    rho, theta = radius * np.sqrt(rng.uniform(0, 1, m)), rng.uniform(0, 2 * np.pi, m)
    plane = c - depth * u + rho[:, None] * (np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2)
    plane = plane[part.inside(plane)]
    direction = rng.standard_normal((rng.poisson(density * 4 * np.pi * radius ** 2 * 3), 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    ball = c + radius * direction
    ball_in = part.inside(ball) & ((ball - c) @ u > -depth)
    new_p = np.concatenate([plane, ball[ball_in]])
    new_n = np.concatenate([np.tile(u, (len(plane), 1)), -direction[ball_in]])
    # Thin to the surface density (the samples above were drawn three times denser), then roughen.
    thin = rng.uniform(0, 1, len(new_p)) < 1 / 3
    new_p, new_n = new_p[thin], new_n[thin]
    new_p = new_p + new_n * rng.normal(0, 0.15, (len(new_p), 1))
    labels = np.r_[np.zeros(int((~removed).sum()), np.uint8), np.ones(len(new_p), np.uint8)]
    return np.concatenate([points[~removed], new_p]), np.concatenate([normals[~removed], new_n]), labels


def _surface_area(part: Part, rng: np.random.Generator) -> float:
    """The part's surface area, estimated from the share of primitive samples that are kept."""
    total = sum(p.area() for p in part.positives) + sum(p.area() for p in part.negatives)
    pts, _ = part._surface(20000 / total, rng)
    return len(pts) / (20000 / total)


# --- clouds -------------------------------------------------------------------------------------------
def scan(points: np.ndarray, normals: np.ndarray, rng: np.random.Generator
         ) -> tuple[np.ndarray, np.ndarray]:
    """Scanner-like noise, then a random pose (any rotation; a shift of up to ~50 mm)."""
    tangent = rng.normal(0, NOISE_TANGENT, points.shape)
    tangent -= (tangent * normals).sum(axis=1, keepdims=True) * normals
    noisy = points + normals * rng.normal(0, NOISE_NORMAL, (len(points), 1)) + tangent
    rotation = Rotation.random(random_state=rng).as_matrix()
    shift = rng.normal(0, 30, 3)
    return noisy @ rotation.T + shift, normals @ rotation.T


def make_cloud(kind: str, n_points: int, rng: np.random.Generator, defect: str | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scanned part of `kind` with n_points points (about n_points with a hole or a chip),
    optionally with a defect: points, normals, 0/1 labels."""
    part = make_part(kind, rng)
    points, normals = part.sample(n_points, rng)
    labels = np.zeros(len(points), dtype=np.uint8)
    if defect is not None:
        points, normals, labels = add_defect(part, points, normals, defect, rng)
    points, normals = scan(points, normals, rng)
    return points, normals, labels


def write_dataset(root: str | Path, parts=PARTS, defects=DEFECTS, n_train: int = 20, n_good: int = 10,
                  n_per_defect: int = 6, n_points: int = 20000, seed: int = 0, progress_desc: str = "synthesize"
                  ) -> Path:
    """The synthetic dataset in the MVTec-like layout (docs/cloud.md):

        ROOT/<part>/train/good/000.ply
        ROOT/<part>/test/good/000.ply, ROOT/<part>/test/<defect>/000.ply
        ROOT/<part>/ground_truth/<defect>/000.npy   uint8 per point, 1 = defect, in the PLY's order

    PLY files are binary with float x y z and nx ny nz. Written to a temporary folder beside
    ROOT and moved into place whole."""
    import os
    import shutil
    import tempfile

    from normalcy.cloud.io import write_ply
    from normalcy.core.progress import progress

    root = Path(root)
    unknown = [p for p in parts if p not in PARTS] + [d for d in defects if d not in DEFECTS]
    if unknown:
        raise DataError(f"unknown part or defect kind(s) {', '.join(unknown)}; parts: {', '.join(PARTS)}; "
                        f"defects: {', '.join(DEFECTS)}")
    if root.exists() and any(root.iterdir()):
        raise DataError(f"{root} exists and is not empty; choose a new folder for the synthetic dataset")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        jobs = []
        for p_index, part in enumerate(parts):
            jobs += [(p_index, part, "train", "good", i) for i in range(n_train)]
            jobs += [(p_index, part, "test", "good", i) for i in range(n_good)]
            jobs += [(p_index, part, "test", d, i) for d in defects for i in range(n_per_defect)]
        for p_index, part, split, kind, i in progress(jobs, desc=progress_desc, unit="cloud"):
            # One generator per cloud: a cloud does not change when others are added or removed.
            rng = np.random.default_rng([seed, p_index, split == "test", 0 if kind == "good" else 1 + DEFECTS.index(kind), i])
            points, normals, labels = make_cloud(part, n_points, rng, None if kind == "good" else kind)
            folder = staging / part / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            write_ply(folder / f"{i:03d}.ply", points, normals)
            if kind != "good":
                truth = staging / part / "ground_truth" / kind
                truth.mkdir(parents=True, exist_ok=True)
                np.save(truth / f"{i:03d}.npy", labels)
        from normalcy.core.benchmark import current_umask

        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700
        if root.exists():
            root.rmdir()
        os.rename(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root
