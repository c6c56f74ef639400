"""`normalcy serve-bench`: the server under a bounded load, next to the same model in-process.

Served: `normalcy serve` in a subprocess on a loopback port; `requests` infer requests, at
most `concurrency` in flight, from an async httpx client; after a warm-up that is not
counted. Each request is one image (from --data) or the given JSON body (--request). With
`binary`, the same server also gets the same inputs as binary tensor data (images as raw file
bytes, numbers as little-endian arrays; the outputs as binary data too): the JSON and binary
loads alternate in two rounds each, so a neighbour's load on a shared machine falls on both.

In-process: the same model scoring the same inputs in this process with no HTTP, at one
thread and at every core (at most `inprocess_requests` requests' worth), through the model's
codec as the server calls it: for images, the files read and decoded inside the timing and
scored in one call, in the detector's own batches (what a script would do; one call, so its
latency columns are the mean per image); for a JSON body, decoding and scoring it once per
request. Throughput is items per second (images, rows, points ...); latency is per request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError
from normalcy.core.modelfile import load
from normalcy.core.progress import progress
from normalcy.serve.app import model_name, set_threads
from normalcy.serve.codec import NUMPY, Codec, Limits, codec_for, parse_inputs

COLUMNS = ["detector", "dataset", "mode", "body", "items", "requests", "concurrency", "workers", "threads",
           "throughput_per_s", "relative", "p50_ms", "p99_ms", "errors"]
PACKAGES = ("torch", "fastapi", "uvicorn", "httpx", "numpy")
JSON_HEADERS = {"Content-Type": "application/json"}
ROUNDS = 2  # alternating JSON and binary loads, when both run


def run(model_dir: Path, data: Path | None, request: Path | None, requests: int, concurrency: int, workers: int,
        threads: int, outputs: list[str], json_path: Path, inprocess_requests: int = 400, binary: bool = False
        ) -> tuple[Path, Path, list[dict]]:
    if requests < 1 or concurrency < 1:
        raise DataError(f"--requests and --concurrency must be at least 1, got {requests} and {concurrency}")
    detector = load(model_dir)
    codec = codec_for(detector, Limits())
    if hasattr(detector, "threads"):
        detector.threads = None  # the threads are set below, process-wide, as the server does
    bodies, items_per_request, dataset = _bodies(data, request, outputs, codec, binary)
    load_before = os.getloadavg()
    common = {"detector": type(detector).__name__, "dataset": dataset}
    records = []
    # In-process at one thread and at every core: on a busy machine one thread can be the
    # faster, and the baseline is the better of the two.
    for n in sorted({1, os.cpu_count() or 1}):
        set_threads(n)
        record = _in_process(codec, data, bodies["JSON"], min(requests, inprocess_requests), items_per_request)
        records.append({**common, "mode": "in-process", "body": "files" if data else "JSON", **record,
                        "concurrency": 1, "workers": 1, "threads": n})
    served = _served(model_dir, bodies, requests, concurrency, workers, threads, items_per_request)
    for kind, record in served.items():
        records.append({**common, "mode": "served", "body": kind, **record, "concurrency": concurrency,
                        "workers": workers, "threads": threads})
    best = max(r["throughput_per_s"] for r in records if r["mode"] == "in-process")
    for r in records:
        r["relative"] = r["throughput_per_s"] / best
    settings = {"model": str(model_dir), "outputs": ",".join(outputs) or "all",
                "load_average_before": " ".join(f"{v:.2f}" for v in load_before),
                "load_average_after": " ".join(f"{v:.2f}" for v in os.getloadavg())}
    json_file, md_file = write_results(records, json_path, PACKAGES, "normalcy serve-bench", COLUMNS, settings)
    return json_file, md_file, records


Body = tuple[bytes, dict]  # an infer request's body and its headers


def _bodies(data: Path | None, request: Path | None, outputs: list[str], codec: Codec, binary: bool
            ) -> tuple[dict[str, list[Body]], int, str]:
    """Request bodies to cycle through ("JSON", and "binary" when asked for), items per request,
    and a name for the inputs."""
    wanted = {"outputs": [{"name": o} for o in outputs]} if outputs else {}
    if data is not None:
        from normalcy.image.io import list_images

        files = list_images(data) if data.is_dir() else []
        if not files:
            raise DataError(f"--data {data}: no images in this folder")
        inputs = [[{"name": "image", "datatype": "BYTES", "shape": [1],
                    "data": [base64.b64encode(f.read_bytes()).decode("ascii")]}] for f in files]
        items, dataset = 1, str(data)
    else:
        try:
            body = json.loads(request.read_text())
            inputs, items = [body["inputs"]], int(body["inputs"][0]["shape"][0])
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise DataError(f"--request {request}: not an infer request body with inputs: {exc}") from None
        try:  # a body the model refuses fails here, not 2,000 times
            parse_inputs(body, codec.inputs, Limits())
        except DataError as exc:
            raise DataError(f"--request {request}: {exc}") from None
        wanted = {**{k: v for k, v in body.items() if k != "inputs"}, **wanted}
        dataset = str(request)
    bodies = {"JSON": [(json.dumps({"inputs": i, **wanted}).encode(), JSON_HEADERS) for i in inputs]}
    if binary:
        raw = {s.name for s in codec.inputs if s.raw}
        bodies["binary"] = [_binary_body(i, wanted, raw) for i in inputs]
    return bodies, items, dataset


def _binary_body(inputs: list[dict], wanted: dict, raw: set[str]) -> Body:
    """The same request with its inputs, and its outputs, as binary tensor data."""
    entries, chunks = [], []
    for tensor in inputs:
        values = np.asarray(tensor["data"], dtype=object if tensor["datatype"] == "BYTES" else None).reshape(-1)
        if tensor["datatype"] == "BYTES":
            items = [base64.b64decode(v) if tensor["name"] in raw else v.encode() for v in values]
            chunk = b"".join(struct.pack("<I", len(v)) + v for v in items)
        elif tensor["datatype"] == "BOOL":
            chunk = values.astype(np.uint8).tobytes()
        else:
            if tensor["datatype"].startswith("FP"):  # null (a missing value) is NaN in binary data
                values = [np.nan if v is None else v for v in values]
            chunk = np.asarray(values, dtype=np.dtype(NUMPY[tensor["datatype"]]).newbyteorder("<")).tobytes()
        entry = {k: v for k, v in tensor.items() if k != "data"}
        entries.append({**entry, "parameters": {"binary_data_size": len(chunk)}})
        chunks.append(chunk)
    parameters = {**wanted.get("parameters", {}), "binary_data_output": True}
    header = json.dumps({**wanted, "inputs": entries, "parameters": parameters}).encode()
    return header + b"".join(chunks), {"Content-Type": "application/octet-stream",
                                       "Inference-Header-Content-Length": str(len(header))}


def _in_process(codec: Codec, data: Path | None, bodies: list[Body], requests: int, items_per_request: int) -> dict:
    if data is not None:
        from normalcy.image.io import list_images, read_image

        files = list_images(data)
        chosen = [files[i % len(files)] for i in range(requests)]
        codec.predict([read_image(f) for f in chosen[: codec.detector.batch_size]], {})  # warm-up
        # Timed from the image files, as the server's time starts from the encoded images.
        start = time.perf_counter()
        codec.predict([read_image(f) for f in chosen], {})
        elapsed = time.perf_counter() - start
        # One call scores everything: there is no per-request latency, only the mean per item.
        per_item_ms = 1000 * elapsed / len(chosen)
        return {"items": len(chosen), "requests": 1, "throughput_per_s": len(chosen) / elapsed,
                "p50_ms": per_item_ms, "p99_ms": per_item_ms, "errors": 0}
    latencies = []
    for i in progress(range(requests), desc="in-process", unit="request"):
        start = time.perf_counter()
        body = json.loads(bodies[i % len(bodies)][0])
        codec.predict(codec.decode(parse_inputs(body, codec.inputs, Limits()), {}), {})
        latencies.append(time.perf_counter() - start)
    return _summary(latencies, sum(latencies), items_per_request, 0)


def _served(model_dir: Path, bodies: dict[str, list[Body]], requests: int, concurrency: int, workers: int,
            threads: int, items_per_request: int) -> dict[str, dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "normalcy", "serve", str(model_dir), "--port", str(port),
               "--workers", str(workers), "--threads", str(threads)]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_live(url, server)
        return asyncio.run(_load(f"{url}/v2/models/{model_name(model_dir)}/infer", bodies, requests, concurrency,
                                 items_per_request))
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


async def _load(url: str, bodies: dict[str, list[Body]], requests: int, concurrency: int,
                items_per_request: int) -> dict[str, dict]:
    """Per kind of body, the summary of `requests` requests; with two kinds, they alternate in
    ROUNDS rounds."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        async def one(body: Body) -> tuple[float, bool]:
            start = time.perf_counter()
            try:
                response = await client.post(url, content=body[0], headers=body[1])
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            return time.perf_counter() - start, ok

        async def worker(queue: asyncio.Queue, kind: list[Body], results: list) -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                results.append(await one(kind[i % len(kind)]))

        async def batch(kind: list[Body], first: int, n: int) -> tuple[list, float]:
            queue: asyncio.Queue = asyncio.Queue()
            for i in range(first, first + n):
                queue.put_nowait(i)
            results: list = []
            start = time.perf_counter()
            await asyncio.gather(*(worker(queue, kind, results) for _ in range(concurrency)))
            return results, time.perf_counter() - start

        for kind in bodies.values():  # warm-up: connections, first calls
            await batch(kind, 0, min(requests, 4 * concurrency))
        rounds = ROUNDS if len(bodies) > 1 else 1
        results: dict[str, list] = {name: [] for name in bodies}
        elapsed = dict.fromkeys(bodies, 0.0)
        done = 0
        for r in range(rounds):
            n = requests // rounds + (r < requests % rounds)
            for name, kind in bodies.items():
                got, seconds = await batch(kind, done, n)
                results[name] += got
                elapsed[name] += seconds
            done += n
    return {name: _summary([t for t, _ in got], elapsed[name], items_per_request, sum(not ok for _, ok in got))
            for name, got in results.items()}


def _summary(latencies: list[float], elapsed: float, items_per_request: int, errors: int) -> dict:
    ms = np.array(latencies) * 1000
    items = len(latencies) * items_per_request
    return {"items": items, "requests": len(latencies), "throughput_per_s": items / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "errors": int(errors)}
