"""The project's benchmark file convention, shared by every modality.

A benchmark writes JSON ``{"machine": {...}, "versions": {...}, "records": [...]}`` with one
record per (detector, dataset) pair, keys ``detector``, ``dataset`` and one snake_case key per
figure, plus a Markdown table of the same records with the machine and versions above it.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from normalcy import __version__


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return info


def versions(packages: tuple[str, ...]) -> dict:
    found = {"normalcy": __version__}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def write_results(records: list[dict], json_path: str | Path, packages: tuple[str, ...],
                  title: str, columns: list[str], settings: dict | None = None) -> tuple[Path, Path]:
    """Write the JSON file and a Markdown table beside it (same name, .md); both atomically."""
    json_path = Path(json_path)
    doc = {"machine": machine_info(), "versions": versions(packages), "settings": settings or {},
           "records": records}
    md_path = json_path.with_suffix(".md")
    write_atomic(json_path, json.dumps(doc, indent=2) + "\n")
    write_atomic(md_path, markdown(doc, title, columns))
    return json_path, md_path


def markdown(doc: dict, title: str, columns: list[str]) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in doc["machine"].items()]
    lines.append("- **versions**: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()))
    if doc.get("settings"):
        lines.append("- **settings**: " + ", ".join(f"{k}={v}" for k, v in doc["settings"].items()))
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for rec in doc["records"]:
        lines.append("| " + " | ".join(_cell(rec.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
