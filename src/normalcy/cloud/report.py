"""Pictures of scored clouds: a self-contained HTML report in which every cloud can be turned
with the mouse (a small canvas renderer, no library, no network), coloured by its per-point
scores, and static multi-view PNGs (matplotlib) for documents and `predict --views`.

The colour scale is the image overlays' (normalcy.image.overlay): centred on the model's
threshold when it has one, so the middle of the ramp means 'at the decision boundary'.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from normalcy.core.benchmark import write_atomic
from normalcy.image.overlay import color_range, colorize

MAX_SHOWN = 2500  # points drawn per cloud in the report (the highest-scoring ones always among them)

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{width:260px;border:2px solid #ddd;border-radius:6px;padding:6px;font-size:13px}
canvas{width:100%;height:240px;background:#fafafa;cursor:grab;display:block}
.wrong{border-color:#d33}.flag{color:#d33;font-weight:bold}
"""

# Each cloud: x y z in [-1, 1] as integers of 1/1000, colours as hex; drag turns, the wheel zooms.
_SCRIPT = """
const clouds = JSON.parse(document.getElementById('clouds').textContent);
document.querySelectorAll('canvas[data-i]').forEach(canvas => {
  const c = clouds[+canvas.dataset.i], n = c.p.length / 3;
  let yaw = 0.6, pitch = -0.5, zoom = 1, drag = null;
  function draw() {
    const w = canvas.width = canvas.clientWidth * devicePixelRatio;
    const h = canvas.height = canvas.clientHeight * devicePixelRatio;
    const g = canvas.getContext('2d'), cy = Math.cos(yaw), sy = Math.sin(yaw);
    const cp = Math.cos(pitch), sp = Math.sin(pitch), s = 0.45 * Math.min(w, h) * zoom / 1000;
    const order = [];
    for (let i = 0; i < n; i++) {
      const x = c.p[3*i], y = c.p[3*i+1], z = c.p[3*i+2];
      const x1 = cy * x + sy * z, z1 = -sy * x + cy * z, y1 = cp * y - sp * z1, z2 = sp * y + cp * z1;
      order.push([z2, w / 2 + s * x1, h / 2 - s * y1, i]);
    }
    order.sort((a, b) => a[0] - b[0]);
    const r = Math.max(1.5, 2.2 * devicePixelRatio * zoom);
    for (const [, px, py, i] of order) { g.fillStyle = '#' + c.c[i]; g.fillRect(px - r/2, py - r/2, r, r); }
  }
  canvas.addEventListener('mousedown', e => drag = [e.clientX, e.clientY]);
  window.addEventListener('mouseup', () => drag = null);
  window.addEventListener('mousemove', e => {
    if (!drag) return;
    yaw += (e.clientX - drag[0]) * 0.01; pitch += (e.clientY - drag[1]) * 0.01;
    drag = [e.clientX, e.clientY]; draw();
  });
  canvas.addEventListener('wheel', e => { e.preventDefault(); zoom *= e.deltaY < 0 ? 1.1 : 0.9; draw(); });
  draw();
});
"""


def write_report(path: str | Path, title: str, summary: dict, items: list[dict], threshold: float | None) -> Path:
    """items: dicts with name, truth ("good" or the defect), score, label, points (n x 3) and
    point_scores (n). Most anomalous first; red frames mark clouds the model got wrong."""
    path = Path(path)
    ranked = sorted(items, key=lambda r: -r["score"])
    vmin, vmax = color_range(threshold, np.concatenate([it["point_scores"] for it in ranked]))
    data, cards = [], []
    for i, it in enumerate(ranked):
        points, colours = _shown(it["points"], it["point_scores"], vmin, vmax)
        data.append({"p": points, "c": colours})
        wrong = it["truth"] is not None and bool(it["label"]) != (it["truth"] != "good")
        verdict = '<span class="flag">anomalous</span>' if it["label"] else "normal"
        truth = f"<div>truth: {html.escape(it['truth'])}</div>" if it["truth"] is not None else ""
        cards.append(f'<div class="card{" wrong" if wrong else ""}"><canvas data-i="{i}"></canvas>'
                     f'<div>{html.escape(it["name"])}</div>{truth}'
                     f'<div>score {it["score"]:.3f} &rarr; {verdict}{" (wrong)" if wrong else ""}</div></div>')
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in summary.items())
    # '</' cannot end the JSON's script element early: the data holds only numbers and hex.
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1><table>{rows}</table>"
            "<p>Each cloud is coloured by its per-point scores: blue = normal, red = most anomalous; the middle "
            "of the scale is the model's threshold. Drag to turn a cloud, scroll to zoom. Red frames mark "
            "clouds the model got wrong.</p>"
            f"<div class='grid'>{''.join(cards)}</div>"
            f"<script type='application/json' id='clouds'>{json.dumps(data, separators=(',', ':'))}</script>"
            f"<script>{_SCRIPT}</script></body></html>")
    write_atomic(path, page)
    return path


def _shown(points: np.ndarray, scores: np.ndarray, vmin: float, vmax: float) -> tuple[list[int], list[str]]:
    """At most MAX_SHOWN points (a random half, plus the highest-scoring), centred and scaled
    into [-1000, 1000], with hex colours."""
    if len(points) > MAX_SHOWN:
        top = np.argsort(scores)[::-1][: MAX_SHOWN // 2]
        rest = np.setdiff1d(np.arange(len(points)), top)
        rest = np.random.default_rng(0).choice(rest, MAX_SHOWN - len(top), replace=False)
        chosen = np.concatenate([top, rest])
        points, scores = points[chosen], scores[chosen]
    centred = points - points.mean(axis=0)
    scale = np.abs(centred).max() or 1.0
    coords = np.round(centred / scale * 1000).astype(int).reshape(-1).tolist()
    rgb = colorize((scores - vmin) / max(vmax - vmin, 1e-12))
    return coords, [f"{r:02x}{g:02x}{b:02x}" for r, g, b in rgb.tolist()]


def views_png(path: str | Path, points: np.ndarray, scores: np.ndarray, vmin: float, vmax: float,
              title: str = "") -> Path:
    """Three views (along x, y and z, then an oblique one) of a cloud coloured by its scores."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = colorize((scores - vmin) / max(vmax - vmin, 1e-12)) / 255.0
    order = np.argsort(scores)  # the highest scores drawn last, on top
    fig = plt.figure(figsize=(10, 2.8), dpi=90)
    for k, (elev, azim) in enumerate(((0, 0), (0, 90), (90, -90), (25, 45))):
        ax = fig.add_subplot(1, 4, k + 1, projection="3d")
        ax.scatter(*points[order].T, c=colours[order], s=0.6, depthshade=False, linewidths=0)
        ax.view_init(elev, azim)
        ax.set_box_aspect(np.ptp(points, axis=0) + 1e-9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    path = Path(path)
    write_atomic(path, buffer.getvalue())
    return path


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))
