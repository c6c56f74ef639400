"""`normalcy serve-bench`: the server under a bounded load, next to the same model in-process.

Served: `normalcy serve` in a subprocess on a loopback port; `requests` infer requests, at
most `concurrency` in flight, from an async httpx client; after a warm-up that is not
counted. Each request is one image (from --data) or the given JSON body (--request).

In-process: the same model scoring the same inputs in this process with no HTTP, at one
thread and at every core (at most `inprocess_requests` requests' worth): for images,
`score_maps` over the files, read and decoded inside the timing, in the detector's own batches
(what a script would do; one call, so its latency columns are the mean per image); for a JSON
body, the model's codec decoding and scoring it once per request.
Throughput is items per second (images, rows, points ...); latency is per request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError
from normalcy.core.modelfile import load
from normalcy.core.progress import progress
from normalcy.serve.app import set_threads

COLUMNS = ["detector", "dataset", "mode", "items", "requests", "concurrency", "workers", "threads",
           "throughput_per_s", "relative", "p50_ms", "p99_ms", "errors"]
PACKAGES = ("torch", "fastapi", "uvicorn", "httpx", "numpy")


def run(model_dir: Path, data: Path | None, request: Path | None, requests: int, concurrency: int, workers: int,
        threads: int, outputs: list[str], json_path: Path, inprocess_requests: int = 400
        ) -> tuple[Path, Path, list[dict]]:
    if requests < 1 or concurrency < 1:
        raise DataError(f"--requests and --concurrency must be at least 1, got {requests} and {concurrency}")
    detector = load(model_dir)
    if hasattr(detector, "num_threads"):
        detector.num_threads = None  # the threads are set below, process-wide, as the server does
    bodies, items_per_request, dataset = _bodies(data, request, outputs)
    load_before = os.getloadavg()
    common = {"detector": type(detector).__name__, "dataset": dataset}
    records = []
    # In-process at one thread and at every core: on a busy machine one thread can be the
    # faster, and the baseline is the better of the two.
    for n in sorted({1, os.cpu_count() or 1}):
        set_threads(n)
        record = _in_process(detector, data, bodies, min(requests, inprocess_requests), items_per_request)
        records.append({**common, "mode": "in-process", **record, "concurrency": 1, "workers": 1, "threads": n})
    served = _served(model_dir, bodies, requests, concurrency, workers, threads, items_per_request)
    records.append({**common, "mode": "served", **served, "concurrency": concurrency, "workers": workers,
                    "threads": threads})
    best = max(r["throughput_per_s"] for r in records if r["mode"] == "in-process")
    for r in records:
        r["relative"] = r["throughput_per_s"] / best
    settings = {"model": str(model_dir), "outputs": ",".join(outputs) or "all",
                "load_average_before": " ".join(f"{v:.2f}" for v in load_before),
                "load_average_after": " ".join(f"{v:.2f}" for v in os.getloadavg())}
    json_file, md_file = write_results(records, json_path, PACKAGES, "normalcy serve-bench", COLUMNS, settings)
    return json_file, md_file, records


def _bodies(data: Path | None, request: Path | None, outputs: list[str]) -> tuple[list[bytes], int, str]:
    """Request bodies to cycle through, items per request, and a name for the inputs."""
    wanted = {"outputs": [{"name": o} for o in outputs]} if outputs else {}
    if data is not None:
        from normalcy.image.io import list_images

        files = list_images(data) if data.is_dir() else []
        if not files:
            raise DataError(f"--data {data}: no images in this folder")
        bodies = [json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                          "data": [base64.b64encode(f.read_bytes()).decode("ascii")]}],
                              **wanted}).encode() for f in files]
        return bodies, 1, str(data)
    try:
        body = json.loads(request.read_text())
        first = body["inputs"][0]["shape"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise DataError(f"--request {request}: not an infer request body with inputs: {exc}") from None
    return [json.dumps({**body, **wanted}).encode()], int(first), str(request)


def _in_process(detector, data: Path | None, bodies: list[bytes], requests: int, items_per_request: int) -> dict:
    if data is not None:
        from normalcy.image.io import list_images, read_image

        files = list_images(data)
        chosen = [files[i % len(files)] for i in range(requests)]
        detector.score_maps([read_image(f) for f in chosen[: detector.batch_size]])  # warm-up
        # Timed from the image files, as the server's time starts from the encoded images.
        start = time.perf_counter()
        detector.score_maps([read_image(f) for f in chosen])
        elapsed = time.perf_counter() - start
        # One call scores everything: there is no per-request latency, only the mean per item.
        per_item_ms = 1000 * elapsed / len(chosen)
        return {"items": len(chosen), "requests": 1, "throughput_per_s": len(chosen) / elapsed,
                "p50_ms": per_item_ms, "p99_ms": per_item_ms, "errors": 0}
    from normalcy.serve.codec import Limits, codec_for, parse_inputs

    codec = codec_for(detector, Limits())
    latencies = []
    for i in progress(range(requests), desc="in-process", unit="request"):
        start = time.perf_counter()
        body = json.loads(bodies[i % len(bodies)])
        codec.predict(codec.decode(parse_inputs(body, codec.inputs, Limits()), {}), {})
        latencies.append(time.perf_counter() - start)
    return _summary(latencies, sum(latencies), items_per_request, 0)


def _served(model_dir: Path, bodies: list[bytes], requests: int, concurrency: int, workers: int, threads: int,
            items_per_request: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "normalcy", "serve", str(model_dir), "--port", str(port),
               "--workers", str(workers), "--threads", str(threads)]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_live(url, server)
        name = Path(model_dir).resolve().name
        return asyncio.run(_load(f"{url}/v2/models/{name}/infer", bodies, requests, concurrency, items_per_request))
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_live(url: str, server: subprocess.Popen) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise DataError(f"the server exited with status {server.returncode} before answering")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise DataError("the server did not become ready within 120 s")


async def _load(url: str, bodies: list[bytes], requests: int, concurrency: int, items_per_request: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=120, headers=headers) as client:
        async def one(i: int) -> tuple[float, bool]:
            start = time.perf_counter()
            try:
                response = await client.post(url, content=bodies[i % len(bodies)])
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            return time.perf_counter() - start, ok

        async def worker(queue: asyncio.Queue, results: list) -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                results.append(await one(i))

        async def batch(n: int) -> tuple[list, float]:
            queue: asyncio.Queue = asyncio.Queue()
            for i in range(n):
                queue.put_nowait(i)
            results: list = []
            start = time.perf_counter()
            await asyncio.gather(*(worker(queue, results) for _ in range(concurrency)))
            return results, time.perf_counter() - start

        await batch(min(requests, 4 * concurrency))  # warm-up: connections, first calls
        results, elapsed = await batch(requests)
    return _summary([t for t, _ in results], elapsed, items_per_request, sum(not ok for _, ok in results))


def _summary(latencies: list[float], elapsed: float, items_per_request: int, errors: int) -> dict:
    ms = np.array(latencies) * 1000
    items = len(latencies) * items_per_request
    return {"items": items, "requests": len(latencies), "throughput_per_s": items / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "errors": int(errors)}
