"""A self-contained HTML page of an evaluation: metrics, then every test image's overlay,
most anomalous first, marked where the model's label disagrees with the truth."""

from __future__ import annotations

import html
from pathlib import Path

from normalcy.core.benchmark import write_atomic

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{width:220px;border:2px solid #ddd;border-radius:6px;padding:6px;font-size:13px}
.card img{width:100%;display:block}.wrong{border-color:#d33}.flag{color:#d33;font-weight:bold}
"""


def write_report(path: str | Path, title: str, summary: dict, items: list[dict]) -> Path:
    """items: dicts with overlay (path relative to the report), name, truth (None where it
    is unknown: no verdict is marked wrong), score, label."""
    path = Path(path)
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in summary.items())
    cards = []
    for it in sorted(items, key=lambda r: -r["score"]):
        known = it["truth"] is not None
        wrong = known and bool(it["label"]) != (it["truth"] != "good")
        verdict = '<span class="flag">anomalous</span>' if it["label"] else "normal"
        truth = f'<div>truth: {html.escape(it["truth"])}</div>' if known else ""
        cards.append(
            f'<div class="card{" wrong" if wrong else ""}">'
            f'<img src="{html.escape(it["overlay"])}" alt="{html.escape(it["name"])}">'
            f'<div>{html.escape(it["name"])}</div>{truth}'
            f'<div>score {it["score"]:.3f} &rarr; {verdict}{" (wrong)" if wrong else ""}</div></div>'
        )
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<table>{rows}</table><p>Colour: blue = normal, red = most anomalous; the middle of "
            f"the scale is the model's threshold. Red frames mark images the model got wrong.</p>"
            f"<div class='grid'>{''.join(cards)}</div></body></html>")
    write_atomic(path, page)
    return path


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))
