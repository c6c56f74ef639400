"""The HTTP service against a real uvicorn server on a loopback port, with httpx and Triton's
own client (`tritonclient.http`, JSON and binary tensor data) as clients.

Models of every modality are fitted here on tiny data and saved; the served scores are
checked against the same saved models scored in-process, and hostile requests must each get
a 4xx while the server keeps answering.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from clirunner import run_in_process
from conftest import make_detector, paste_square, texture
from normalcy.cli.serve import check_host, read_token
from normalcy.core.errors import DataError
from normalcy.core.modelfile import load
from normalcy.events import Frequency
from normalcy.logs.model import LogModel
from normalcy.serve.app import create_app
from normalcy.serve.codec import Limits
from normalcy.tabular import ECOD
from normalcy.timeseries import RollingMAD

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Server:
    """uvicorn serving `app` in a thread on a free loopback port."""

    def __init__(self, app):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, followed by a few bytes of pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def image_request(*images: bytes, **extra) -> dict:
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                        "data": [b64(i) for i in images]}], **extra}


LOG_LINES = [f"session {s} opened by user{s % 3}" if i == 0 else f"session {s} read block {i}"
             for s in range(40) for i in range(4)]
TEXTS = ["the pump pressure is normal", "valve opened on schedule", "temperature within range",
         "the pump was restarted after maintenance", "flow rate steady at nominal"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, fitted, image_data):
    """name -> saved model folder, one or two per modality."""
    root = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(7)
    image = copy.copy(fitted("patchcore"))
    image.set_threshold(float(np.max(image.decision_function(image_data.normal))))
    out = {"parts": image.save(root / "parts")}
    out["parts-global"] = make_detector("gaussian").fit(image_data.train).save(root / "parts-global")

    table = pd.DataFrame({"amount": rng.normal(100, 10, 300), "items": rng.integers(1, 5, 300),
                          "country": rng.choice(["de", "fr", "it"], 300)})
    ecod = ECOD().fit(table)
    ecod.set_threshold(float(np.quantile(ecod.decision_function(table), 0.99)))
    out["tx"] = ecod.save(root / "tx.model")  # served as "tx"

    series = RollingMAD(history=30, warmup=10).fit(np.sin(np.arange(300) / 5) + rng.normal(0, 0.05, 300))
    series.set_threshold(3.0)
    out["sensor"] = series.save(root / "sensor")
    pair = RollingMAD(history=30, warmup=10, likelihood=False).fit(rng.normal(size=(200, 2)))
    out["pair"] = pair.save(root / "pair")

    events = pd.DataFrame({"user": rng.choice(["ann", "bob", "cy"], 300), "host": rng.choice(["h1", "h2"], 300)})
    freq = Frequency().fit(events)
    freq.set_threshold(float(np.quantile(freq.decision_function(events), 0.95)))
    out["logins"] = freq.save(root / "logins")

    logs = LogModel("unseen", group_by=r"session (\d+)").fit(LOG_LINES)
    out["app-logs"] = logs.save(root / "app-logs")

    from normalcy.text import TextDetector

    out["notes"] = TextDetector(options={"n_neighbors": 1}).fit(TEXTS).save(root / "notes")
    return out


@pytest.fixture(scope="module")
def server(models):
    # The table model by its folder, tx.model: its name comes from the server.
    folders = [models["tx"] if name == "tx" else (name, path) for name, path in models.items()]
    app = create_app(folders, token=TOKEN, workers=2, threads=1)
    with Server(app) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        yield c


def infer(client, name, body, **kw):
    return client.post(f"/v2/models/{name}/infer", json=body, **kw)


def outputs(response) -> dict:
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


def assert_alive(client):
    assert client.get("/v2/health/live").json() == {"live": True}


# --- protocol paths -------------------------------------------------------------------------------


def test_health_server_metadata_and_repository_index(client, models):
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["extensions"] == ["model_repository", "binary_tensor_data"]
    index = client.post("/v2/repository/index", json={}).json()
    assert [m["name"] for m in index] == list(models)
    assert {m["state"] for m in index} == {"READY"}


def test_model_metadata_per_modality(client):
    meta = client.get("/v2/models/parts").json()
    assert meta["platform"] == "normalcy" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["score", "label", "anomaly_map", "overlay"]
    assert meta["parameters"]["modality"] == "image" and meta["parameters"]["detector"] == "PatchCore"
    assert isinstance(meta["parameters"]["threshold"], float)
    # GaussianAD gives no maps and this one has no threshold: neither is listed.
    assert [o["name"] for o in client.get("/v2/models/parts-global").json()["outputs"]] == ["score"]
    tx = client.get("/v2/models/tx").json()
    assert [(i["name"], i["datatype"]) for i in tx["inputs"]] == [("amount", "FP64"), ("items", "FP64"),
                                                                    ("country", "BYTES")]
    assert client.get("/v2/models/pair").json()["inputs"] == [{"name": "values", "datatype": "FP64",
                                                               "shape": [-1, 2]}]
    modality = {n: client.get(f"/v2/models/{n}").json()["parameters"]["modality"]
                for n in ("sensor", "logins", "app-logs", "notes")}
    assert modality == {"sensor": "timeseries", "logins": "events", "app-logs": "logs", "notes": "text"}


def test_model_ready_and_versions(client):
    assert client.get("/v2/models/tx/ready").json() == {"name": "tx", "ready": True}
    assert client.get("/v2/models/tx/versions/1/ready").status_code == 200
    assert client.get("/v2/models/tx/versions/1").json()["name"] == "tx"
    assert client.get("/v2/models/tx/versions/2").status_code == 404


def test_unknown_model_and_path_are_404_with_an_error(client):
    for response in (client.get("/v2/models/nope"), client.get("/v2/models/nope/ready"),
                     client.post("/v2/models/nope/infer", json={})):
        assert response.status_code == 404
        assert "nope" in response.json()["error"]
    assert client.get("/v2/nothing").json()["error"]


# --- inference per modality: served == in-process -----------------------------------------------


def test_image_scores_and_maps_equal_in_process(client, models, image_data):
    rng = np.random.default_rng(3)
    images = [image_data.normal[0], paste_square(rng, texture(rng))[0]]
    out = outputs(infer(client, "parts", image_request(*map(png, images), id="req-1")))
    detector = load(models["parts"])
    expected = detector.detect(np.stack(images))  # PNG is lossless: the same pixels
    scores, maps = expected.scores, expected.localization
    np.testing.assert_allclose(out["score"]["data"], scores, rtol=1e-6)
    assert out["label"]["data"] == [bool(s >= detector.threshold_) for s in scores]
    assert out["anomaly_map"]["shape"] == [2, 64, 64]
    np.testing.assert_allclose(np.array(out["anomaly_map"]["data"]).reshape(2, 64, 64), maps, rtol=1e-5, atol=1e-6)
    assert "overlay" not in out


def test_image_overlay_is_a_png_of_the_input_size(client):
    image = np.full((48, 80, 3), 128, dtype=np.uint8)
    response = infer(client, "parts", image_request(png(image), parameters={"overlay": True}))
    overlay = Image.open(io.BytesIO(base64.b64decode(outputs(response)["overlay"]["data"][0])))
    assert overlay.format == "PNG" and overlay.size == (80, 48)


def test_requested_outputs_only(client):
    response = infer(client, "parts", image_request(png(np.full((64, 64, 3), 90, np.uint8)),
                                                    outputs=[{"name": "score"}]))
    assert list(outputs(response)) == ["score"]
    assert infer(client, "parts", image_request(png(np.zeros((64, 64, 3), np.uint8)),
                                                outputs=[{"name": "heat"}])).status_code == 400


def test_image_without_maps(client, models, image_data):
    out = outputs(infer(client, "parts-global", image_request(png(image_data.normal[1]))))
    assert list(out) == ["score"]
    expected = load(models["parts-global"]).decision_function(image_data.normal[1:2])
    np.testing.assert_allclose(out["score"]["data"], expected, rtol=1e-6)


def test_tabular_scores_equal_in_process(client, models):
    rows = pd.DataFrame({"amount": [101.0, 400.0, 95.5], "items": [2, 3, 1], "country": ["de", "fr", "zz"]})
    body = {"inputs": [{"name": "amount", "datatype": "FP64", "shape": [3], "data": rows["amount"].tolist()},
                       {"name": "items", "datatype": "INT64", "shape": [3], "data": rows["items"].tolist()},
                       {"name": "country", "datatype": "BYTES", "shape": [3], "data": rows["country"].tolist()}]}
    out = outputs(infer(client, "tx", body))
    detector = load(models["tx"])
    expected = detector.decision_function(rows)
    np.testing.assert_allclose(out["score"]["data"], expected, rtol=1e-9)
    assert out["label"]["data"] == [bool(s >= detector.threshold_) for s in expected]
    assert out["label"]["data"][1] is True  # 400 is 30 standard deviations out


def test_null_and_empty_text_are_missing_values_as_in_process(client, models):
    # What docs/serving.md tells table users: a missing value is sent in its column.
    body = {"inputs": [{"name": "amount", "datatype": "FP64", "shape": [3], "data": [None, 99.0, 99.0]},
                       {"name": "items", "datatype": "INT64", "shape": [3], "data": [2, 2, 2]},
                       {"name": "country", "datatype": "BYTES", "shape": [3], "data": ["de", "", "de"]}]}
    rows = pd.DataFrame({"amount": [np.nan, 99.0, 99.0], "items": [2, 2, 2], "country": ["de", None, "de"]})
    expected = load(models["tx"]).decision_function(rows)
    served = outputs(infer(client, "tx", body))["score"]["data"]
    np.testing.assert_allclose(served, expected, rtol=1e-9)
    assert served[1] != served[2]  # the empty category is not "de"


def test_timeseries_scores_equal_in_process_and_do_not_change_the_model(client, models):
    values = np.sin(np.arange(300, 360) / 5)
    values[40] = 5.0
    body = {"inputs": [{"name": "values", "datatype": "FP32", "shape": [60], "data": values.tolist()}]}
    first, again = outputs(infer(client, "sensor", body)), outputs(infer(client, "sensor", body))
    expected = load(models["sensor"]).decision_function(values.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(first["score"]["data"], expected, rtol=1e-9)
    assert first["score"]["data"] == again["score"]["data"]
    assert first["label"]["data"][40] is True


def test_multivariate_series_nested_rows(client, models):
    rows = np.random.default_rng(1).normal(size=(25, 2))
    body = {"inputs": [{"name": "values", "datatype": "FP64", "shape": [25, 2], "data": rows.tolist()}]}
    np.testing.assert_allclose(outputs(infer(client, "pair", body))["score"]["data"],
                               load(models["pair"]).decision_function(rows), rtol=1e-9)


def test_events_scores_equal_in_process(client, models):
    frame = pd.DataFrame({"user": ["ann", "bob", "mallory"], "host": ["h1", "h2", "h9"]})
    body = {"inputs": [{"name": c, "datatype": "BYTES", "shape": [3], "data": frame[c].tolist()}
                       for c in ("user", "host")]}
    out = outputs(infer(client, "logins", body))
    np.testing.assert_allclose(out["score"]["data"], load(models["logins"]).decision_function(frame), rtol=1e-9)
    assert out["label"]["data"][2] is True


def test_logs_scores_per_group_equal_in_process(client, models):
    lines = ["session 900 opened by user1", "session 900 read block 1",
             "session 901 opened by user2", "session 901 kernel panic at 0xdead"]
    out = outputs(infer(client, "app-logs", {"inputs": [{"name": "lines", "datatype": "BYTES", "shape": [4],
                                                         "data": lines}]}))
    analysis = load(models["app-logs"]).analyse(lines, explain=False)
    assert out["group"]["data"] == analysis.groups.keys == ["session 900", "session 901"]
    assert out["n_lines"]["data"] == [2, 2]
    np.testing.assert_allclose(out["score"]["data"], analysis.scores, rtol=1e-9)
    assert out["score"]["data"][1] > out["score"]["data"][0]  # the unseen panic line


def test_text_scores_and_nearest_equal_in_process(client, models):
    texts = ["the pump pressure is normal", "a recipe for lemon cake"]
    out = outputs(infer(client, "notes", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                                                      "data": texts}]}))
    explanation = load(models["notes"]).explain(texts)
    np.testing.assert_allclose(out["score"]["data"], explanation.scores, rtol=1e-6, atol=1e-6)
    assert out["nearest"]["data"] == [evidence[0] for evidence in explanation.evidence]
    assert out["score"]["data"][1] > out["score"]["data"][0]


def test_concurrent_requests_get_their_own_scores(client, models, image_data):
    images = list(image_data.test)
    detector = load(models["parts"])
    expected = detector.decision_function(np.stack(images))
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda im: outputs(infer(client, "parts", image_request(png(im))))["score"]["data"][0],
                            images))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # A model that scores one request at a time (it steps its own state) under concurrency.
    series = [np.sin(np.arange(300, 330 + k) / 5) for k in range(8)]
    sensor = load(models["sensor"])
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda v: outputs(infer(client, "sensor", {"inputs": [
            {"name": "values", "datatype": "FP64", "shape": [len(v)], "data": v.tolist()}]}))["score"]["data"],
            series))
    for values, scores in zip(series, got):
        np.testing.assert_allclose(scores, sensor.decision_function(values), rtol=1e-9)


# --- hostile and malformed requests ------------------------------------------------------------


def hostile_cases(image_data):
    good = png(image_data.normal[0])
    bad_values = {"inputs": [{"name": "values", "datatype": "FP64", "shape": [2], "data": [1.0, "x"]}]}
    return [
        ("parts", image_request(good[: len(good) // 2]), 400, "truncated"),
        ("parts", image_request(png_header_only(50_000, 50_000)), 400,
         "cannot read image input 'image'[0]: larger than Pillow's decompression-bomb limit"),
        ("parts", image_request(b"not an image at all"), 400, "not a recognised image"),
        ("parts", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]}, 400,
         "base64"),
        ("parts", {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}]}, 400,
         "input 'image' has datatype 'FP32', expected BYTES"),
        ("parts", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": [b64(good)]}]}, 400,
         "needs 2 values, got 1"),
        ("parts", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 1], "data": [b64(good)]}]}, 400,
         "input 'image' has shape [1, 1], expected [n]"),
        ("parts", {"inputs": []}, 400, "'inputs'"),
        ("parts", {"inputs": [{"name": "picture", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}, 400,
         "unknown input 'picture'"),
        ("tx", {"inputs": [{"name": "amount", "datatype": "FP64", "shape": [1], "data": [1.0]}]}, 400,
         "missing input(s) 'items', 'country'"),
        ("tx", {"inputs": [{"name": "amount", "datatype": "BYTES", "shape": [1], "data": ["1"]},
                           {"name": "items", "datatype": "INT64", "shape": [1], "data": [1]},
                           {"name": "country", "datatype": "BYTES", "shape": [1], "data": ["de"]}]}, 400,
         "input 'amount' has datatype 'BYTES'"),
        ("tx", {"inputs": [{"name": "amount", "datatype": "FP64", "shape": [2], "data": [1.0, 2.0]},
                           {"name": "items", "datatype": "INT64", "shape": [1], "data": [1]},
                           {"name": "country", "datatype": "BYTES", "shape": [1], "data": ["de"]}]}, 400,
         "same number of rows"),
        ("sensor", bad_values, 400, "element 1 is 'x'"),
        ("pair", {"inputs": [{"name": "values", "datatype": "FP64", "shape": [3, 3], "data": [0.0] * 9}]}, 400,
         "expected [n, 2]"),
        ("sensor", {"inputs": [{"name": "values", "datatype": "FP64", "shape": [1], "data": [1e400]}]}, 400,
         "valid JSON"),  # Python's json writes Infinity, which is no JSON number
    ]


def test_hostile_requests_get_a_4xx_and_the_server_stays_up(client, image_data):
    for name, body, status, message in hostile_cases(image_data):
        response = client.post(f"/v2/models/{name}/infer", content=json.dumps(body),
                               headers={"Content-Type": "application/json"})
        assert response.status_code == status, (message, response.text)
        assert message in response.json()["error"], (message, response.json())
        assert_alive(client)


def test_malformed_json_and_bodies(client):
    for content in (b"{not json", b"\xff\xfe", b"[]", b'{"inputs": {}}', b'{"inputs": [], "parameters": 3}',
                    b"[" * 100_000 + b"]" * 100_000):
        response = client.post("/v2/models/tx/infer", content=content)
        assert response.status_code == 400 and response.json()["error"]
    assert_alive(client)


SURROGATES = {  # model -> inputs with a lone surrogate in one text, and the input and element named
    "tx": ([{"name": "amount", "datatype": "FP64", "shape": [1], "data": [1.0]},
            {"name": "items", "datatype": "INT64", "shape": [1], "data": [2]},
            {"name": "country", "datatype": "BYTES", "shape": [1], "data": ["\ud800"]}], "input 'country': element 0"),
    "logins": ([{"name": "user", "datatype": "BYTES", "shape": [1], "data": ["ann"]},
                {"name": "host", "datatype": "BYTES", "shape": [1], "data": ["h\ud800"]}], "input 'host': element 0"),
    "notes": ([{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["fine", "\udfff"]}],
              "input 'text': element 1"),
    "app-logs": ([{"name": "lines", "datatype": "BYTES", "shape": [1], "data": ["session 1 \ud800"]}],
                 "input 'lines': element 0"),
}


@pytest.mark.parametrize("name", SURROGATES)
def test_a_lone_surrogate_is_a_400_naming_input_and_element(client, name):
    inputs, named = SURROGATES[name]
    # json.dumps writes the escape "\ud800", which JSON parsers accept; it used to be a 500.
    response = client.post(f"/v2/models/{name}/infer", content=json.dumps({"inputs": inputs}),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{named} is not valid text: it holds a lone surrogate")
    assert_alive(client)


def binary_request(inputs: list[tuple[dict, bytes]], **extra) -> tuple[bytes, dict]:
    """A body with binary tensor data, and its headers."""
    header = json.dumps({"inputs": [{**entry, "parameters": {"binary_data_size": len(data)}}
                                    for entry, data in inputs], **extra}).encode()
    return header + b"".join(data for _, data in inputs), {"Inference-Header-Content-Length": str(len(header))}


def test_binary_tensor_data_in_and_out_over_http(client, models):
    values = np.sin(np.arange(300, 340) / 5)
    content, headers = binary_request(
        [({"name": "values", "datatype": "FP64", "shape": [40]}, values.astype("<f8").tobytes())],
        parameters={"binary_data_output": True},
        outputs=[{"name": "score"}, {"name": "label", "parameters": {"binary_data": False}}])
    response = client.post("/v2/models/sensor/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    size = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:size])
    assert header["outputs"][0] == {"name": "score", "datatype": "FP64", "shape": [40],
                                    "parameters": {"binary_data_size": 320}}
    detector = load(models["sensor"])
    expected = detector.decision_function(values)
    np.testing.assert_allclose(np.frombuffer(response.content[size:], "<f8"), expected, rtol=1e-9)
    assert header["outputs"][1]["data"] == [bool(s >= detector.threshold_) for s in expected]


def test_hostile_binary_requests_get_a_400_and_the_server_stays_up(client):
    values = np.zeros(4).tobytes()
    entry = {"name": "values", "datatype": "FP64", "shape": [4]}
    content, headers = binary_request([(entry, values)])
    truncated, text_headers = binary_request([({"name": "text", "datatype": "BYTES", "shape": [1]},
                                               struct.pack("<I", 50) + b"short")])
    cases = [
        ("sensor", content, {"Inference-Header-Content-Length": str(len(content) + 10)}, "whole body has only"),
        ("sensor", content + b"\0" * 8, headers, "8 bytes of binary data after the JSON header belong to no input"),
        ("sensor", content[:-8], headers, "binary_data_size is 32 bytes, but only 24"),
        ("sensor", content, {"Inference-Header-Content-Length": "-1"}, "must be the JSON header's size"),
        ("notes", truncated, text_headers,
         "input 'text': element 0 is truncated: its length says 50 bytes, 5 are left"),
        ("notes", *binary_request([({"name": "text", "datatype": "BYTES", "shape": [1]},
                                    struct.pack("<I", 3) + "\ud800".encode("utf-8", "surrogatepass"))]),
         "input 'text': element 0 is not valid text"),
        ("sensor", content, {**headers, "Content-Encoding": "gzip"}, "Content-Encoding 'gzip' is not supported"),
    ]
    for name, body, extra, message in cases:
        response = client.post(f"/v2/models/{name}/infer", content=body, headers=extra)
        assert response.status_code in (400, 415), (message, response.text)
        assert message in response.json()["error"], (message, response.json())
        assert_alive(client)


def test_missing_or_wrong_token_is_401_and_public_paths_stay_open(server, image_data):
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for response in (anonymous.post("/v2/repository/index", json={}), anonymous.get("/v2/models/tx"),
                         anonymous.post("/v2/models/parts/infer", json=image_request(png(image_data.normal[0]))),
                         anonymous.get("/v2/models/tx", headers={"Authorization": "Bearer wrong"}),
                         anonymous.get("/v2/models/tx", headers={"Authorization": TOKEN})):
            assert response.status_code == 401
            assert "bearer token" in response.json()["error"]
        assert anonymous.get("/v2/health/ready").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
        assert_alive(anonymous)


@pytest.fixture(scope="module")
def tight(models):
    """A second server with small limits: body, image pixels, images per request."""
    limits = Limits(max_body_bytes=20_000, max_image_pixels=64 * 64, max_images=2)
    app = create_app([("parts", models["parts"]), ("tx", models["tx"])], limits=limits, workers=1)
    with Server(app) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        yield c


def test_oversized_body_is_413_declared_or_streamed(tight):
    body = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x" * 50_000]}]})
    assert tight.post("/v2/models/tx/infer", content=body).status_code == 413

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(50):
            yield b" " * 1000

    response = tight.post("/v2/models/tx/infer", content=chunks())
    assert response.status_code == 413 and "limit" in response.json()["error"]
    assert_alive(tight)


def test_image_over_the_pixel_limit_is_refused_before_decoding(tight):
    # 200 x 200 passes Pillow's own guard: the server's limit (64 x 64) is what refuses it.
    response = tight.post("/v2/models/parts/infer", json=image_request(png_header_only(200, 200)))
    assert response.status_code == 400
    assert "200x200 = 40000 pixels, over the limit of max_pixels=4096; not decoded" in response.json()["error"]
    too_many = image_request(*[png(np.zeros((8, 8, 3), np.uint8))] * 3)
    assert "over the limit of 2" in tight.post("/v2/models/parts/infer", json=too_many).json()["error"]
    two_large = image_request(*[png(np.zeros((50, 50, 3), np.uint8))] * 2)  # 2,500 pixels each, 5,000 together
    assert "together, over the limit of 4096" in tight.post("/v2/models/parts/infer", json=two_large).json()["error"]
    assert_alive(tight)


def test_scoring_past_the_timeout_is_503_or_504(models, image_data):
    app = create_app([("parts", models["parts"])], limits=Limits(timeout_s=0.0001), workers=1)
    with Server(app) as s, httpx.Client(base_url=s.url, timeout=30) as client:
        response = client.post("/v2/models/parts/infer", json=image_request(png(image_data.normal[0])))
        assert response.status_code in (503, 504)
        assert "0.0001 s" in response.json()["error"]
        assert_alive(client)


# --- Host header and disconnects --------------------------------------------------------------------


def test_without_a_token_the_host_must_name_this_server(tight, image_data):
    port = tight.base_url.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost.:{port}", f"[::1]:{port}"):
        assert tight.get("/v2/models/tx", headers={"Host": host}).status_code == 200, host
    # A page on evil.example whose name now points at 127.0.0.1 (DNS rebinding) sends its own name.
    for host in (f"evil.example:{port}", "evil.example", f"localhost:{port + 1}", "127.0.0.1", "[::1", ""):
        for response in (tight.get("/v2/models/tx", headers={"Host": host}),
                         tight.post("/v2/models/parts/infer", json=image_request(png(image_data.normal[0])),
                                    headers={"Host": host}),
                         tight.get("/", headers={"Host": host})):
            assert response.status_code == 400, host
            assert "is not this server's address" in response.json()["error"]
            assert "--allow-host" in response.json()["error"]


def test_allowed_host_names_and_a_token_let_other_names_in(models, client):
    app = create_app([("tx", models["tx"])], allow_hosts=["Models.Internal", "proxy.example:8443"])
    with Server(app) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        for host, status in (("models.internal", 200), ("models.internal:1234", 200), ("proxy.example:8443", 200),
                             ("proxy.example", 400), ("proxy.example:9999", 400)):
            assert c.get("/v2/models/tx", headers={"Host": host}).status_code == status, host
    # With a token, the token is what keeps a foreign page out.
    assert client.get("/v2/models/tx", headers={"Host": "evil.example"}).status_code == 200
    with pytest.raises(DataError, match="--allow-host takes a host name"):
        create_app([("tx", models["tx"])], allow_hosts=["http://x/"])


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_a_client_that_disconnects_mid_body_is_a_499_with_one_line_and_no_traceback(tight):
    handler = Records()
    # uvicorn.error and normalcy.serve.access reach these two: they propagate.
    loggers = [logging.getLogger(n) for n in ("uvicorn", "normalcy.serve")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        before = metric_samples(tight)
        port = tight.base_url.port
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /v2/models/tx/infer HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"inputs\": [" % port)
            time.sleep(0.3)  # the server is reading the body when the client goes away
        key = ("normalcy_requests_total", (("model", "tx"), ("route", "infer"), ("status", "499")))
        deadline = time.monotonic() + 5
        while (after := metric_samples(tight)).get(key, 0) - before.get(key, 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)
    assert after.get(key, 0) - before.get(key, 0) == 1
    server_errors = ("normalcy_requests_total", (("model", "tx"), ("route", "infer"), ("status", "500")))
    assert after.get(server_errors, 0) == before.get(server_errors, 0)
    assert [r for r in handler.records if r.exc_info or r.levelno >= logging.ERROR] == []
    lines = [json.loads(r.getMessage()) for r in handler.records if r.name == "normalcy.serve.access"]
    assert [x["status"] for x in lines if x["path"] == "/v2/models/tx/infer"] == [499]
    assert_alive(tight)


# --- operations ------------------------------------------------------------------------------------


def metric_samples(client) -> dict:
    text = client.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_latency_and_scores(client):
    before = metric_samples(client)
    body = {"inputs": [{"name": "values", "datatype": "FP64", "shape": [30], "data": [0.5] * 30}]}
    for _ in range(3):
        outputs(infer(client, "sensor", body))
    assert infer(client, "sensor", {"inputs": []}).status_code == 400
    key = ("normalcy_request_duration_seconds_count", (("model", "sensor"), ("route", "infer")))
    deadline = time.monotonic() + 5  # a request is counted just after its response is sent
    while (after := metric_samples(client)).get(key, 0) - before.get(key, 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("normalcy_requests_total", model="sensor", route="infer", status="200") == 3
    assert delta("normalcy_requests_total", model="sensor", route="infer", status="400") == 1
    assert delta("normalcy_request_duration_seconds_count", model="sensor", route="infer") == 4
    assert delta("normalcy_score_count", model="sensor") == 90
    assert delta("normalcy_score_bucket", model="sensor", le="+Inf") == 90


def test_one_json_access_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="normalcy.serve.access"):
        client.get("/v2/models/tx/ready")
        client.get("/v2/models/nope")
        deadline = time.monotonic() + 5
        while len(caplog.records) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "normalcy.serve.access"]
    assert [(x["method"], x["path"], x["model"], x["status"]) for x in lines] == [
        ("GET", "/v2/models/tx/ready", "tx", 200), ("GET", "/v2/models/nope", "nope", 404)]
    assert all(x["latency_ms"] >= 0 for x in lines)


# --- Triton's client: JSON and binary tensor data ---------------------------------------------------


@pytest.fixture(scope="module")
def triton(server):
    """tritonclient.http and a client of the server. Off CI a missing tritonclient skips these
    tests; under CI (`CI` set) it fails them: it is in the dev extra."""
    if os.environ.get("CI"):
        import tritonclient.http as http
    else:
        http = pytest.importorskip("tritonclient.http")
    client = http.InferenceServerClient(server.url.removeprefix("http://"), connection_timeout=30,
                                        network_timeout=120)
    yield http, client
    client.close()


def triton_cases(image_data):
    """model -> (inputs as numpy arrays by name, a function of the loaded detector giving the
    expected outputs by name)."""
    rng = np.random.default_rng(3)
    images = [image_data.normal[0], paste_square(rng, texture(rng))[0]]
    rows = pd.DataFrame({"amount": [101.0, 400.0], "items": np.array([2, 3], dtype=np.int64),
                         "country": ["de", "zz"]})
    values = np.sin(np.arange(300, 340) / 5)
    values[30] = 4.0
    pair = np.random.default_rng(1).normal(size=(25, 2))
    events = pd.DataFrame({"user": ["ann", "mallory"], "host": ["h1", "h9"]})
    lines = ["session 900 opened by user1", "session 901 kernel panic at 0xdead"]
    texts = ["the pump pressure is normal", "a recipe for lemon cake"]

    def image_outputs(d):
        prediction = d.detect(np.stack(images))
        return {"score": prediction.scores, "anomaly_map": prediction.localization}

    def text_outputs(d):
        explanation = d.explain(texts)
        return {"score": explanation.scores, "nearest": [e[0] for e in explanation.evidence]}

    def log_outputs(d):
        analysis = d.analyse(lines, explain=False)
        return {"score": analysis.scores, "group": list(analysis.groups.keys)}

    return {
        "parts": ({"image": [png(i) for i in images]}, image_outputs),
        "tx": ({c: rows[c].to_numpy() for c in rows}, lambda d: {"score": d.decision_function(rows)}),
        "sensor": ({"values": values}, lambda d: {"score": d.decision_function(values)}),
        "pair": ({"values": pair}, lambda d: {"score": d.decision_function(pair)}),
        "logins": ({c: events[c].to_numpy() for c in events}, lambda d: {"score": d.decision_function(events)}),
        "app-logs": ({"lines": lines}, log_outputs),
        "notes": ({"text": texts}, text_outputs),
    }


def auth() -> dict:
    # A fresh dict per call: tritonclient adds Inference-Header-Content-Length to the dict it is given.
    return dict(AUTH)


TRITON_DATATYPES = {np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64"}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("name", ["parts", "tx", "sensor", "pair", "logins", "app-logs", "notes"])
def test_triton_client_scores_every_modality_as_in_process(triton, models, image_data, name, binary):
    http, client = triton
    arrays, expected_of = triton_cases(image_data)[name]
    inputs = []
    for input_name, data in arrays.items():
        if isinstance(data, list) or data.dtype == object:
            # Files go as raw bytes in binary data, as base64 text in JSON; text as text.
            if name == "parts" and not binary:
                data = [b64(d) for d in data]
            array, datatype = np.array(data, dtype=object), "BYTES"
        else:
            array, datatype = data, TRITON_DATATYPES[data.dtype]
        tensor = http.InferInput(input_name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)  # the client's default is binary_data=True
        inputs.append(tensor)
    meta = client.get_model_metadata(name, headers=auth())
    # No outputs named: the client asks for every output as binary data; for JSON, name them.
    outputs = None if binary else [http.InferRequestedOutput(o["name"], binary_data=False) for o in meta["outputs"]
                                   if o["name"] != "overlay"]
    result = client.infer(name, inputs, outputs=outputs, headers=auth())
    detector = load(models[name])
    expected = expected_of(detector)
    np.testing.assert_allclose(result.as_numpy("score"), expected["score"], rtol=1e-6, atol=1e-9)
    if detector.threshold_ is not None:
        assert result.as_numpy("label").tolist() == [bool(s >= detector.threshold_) for s in expected["score"]]
    if "anomaly_map" in expected:
        np.testing.assert_allclose(result.as_numpy("anomaly_map"), expected["anomaly_map"], rtol=1e-5, atol=1e-6)
    for key in ("nearest", "group"):
        if key in expected:
            got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy(key).tolist()]
            assert got == expected[key]


def test_triton_client_health_metadata_and_errors(triton, image_data):
    http, client = triton
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.is_model_ready("tx", headers=auth())
    assert [i["name"] for i in client.get_model_metadata("tx", headers=auth())["inputs"]] == ["amount", "items",
                                                                                             "country"]
    # Raw bytes that are no UTF-8 text: the server's 400 reaches the client as its message.
    text = http.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"caf\xe9"], dtype=object))
    with pytest.raises(http.InferenceServerException, match="input 'text': element 0 is not valid text"):
        client.infer("notes", [text], headers=auth())
    broken = http.InferInput("image", [1], "BYTES")
    broken.set_data_from_numpy(np.array([png(image_data.normal[0])[:100]], dtype=object))
    with pytest.raises(http.InferenceServerException, match="truncated"):
        client.infer("parts", [broken], headers=auth())


# --- the command line --------------------------------------------------------------------------------


def test_cli_refuses_a_public_address_without_a_token(models):
    result = run_in_process("serve", str(models["tx"]), "--host", "0.0.0.0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: refusing to listen on 0.0.0.0 without a token: anyone who can reach it could use the models; "
        "give --token-file FILE, or listen on 127.0.0.1 behind a proxy"]


def test_cli_names_models_without_the_suffix_and_refuses_two_of_one_name(models, tmp_path):
    import shutil

    other = shutil.copytree(models["tx"], tmp_path / "tx")
    result = run_in_process("serve", str(models["tx"]), str(other))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: two models are named 'tx' ({models['tx']} and {other}); give one "
                                     "another name with --name NAME=DIR")
    result = run_in_process("serve", str(models["tx"]), "--allow-host", "two words")
    assert result.returncode == 2 and "--allow-host takes a host name" in result.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_needs_no_token(host):
    check_host(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.org"])
def test_other_addresses_need_a_token(host):
    with pytest.raises(DataError, match="without a token"):
        check_host(host, None)
    check_host(host, TOKEN)


def test_token_file_must_hold_one_long_token(tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    assert read_token(token) == TOKEN
    for bad in ("abc\n", "two words but long enough\n", ""):
        token.write_text(bad)
        with pytest.raises(DataError, match="at least 16 characters"):
            read_token(token)
    with pytest.raises(DataError, match="cannot read the token file"):
        read_token(tmp_path / "missing")


def test_cli_serves_and_shuts_down_gracefully_on_sigterm(models, tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "normalcy", "serve", str(models["tx"]),
                             "--name", f"sensor={models['sensor']}", "--port", str(port), "--token-file", str(token)],
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 40
        while True:
            try:
                httpx.get(url + "/v2/health/live", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        n = 20_000
        body = {"inputs": [{"name": "values", "datatype": "FP64", "shape": [n], "data": [0.5] * n}]}
        done = []
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, url + "/v2/models/sensor/infer", json=body, headers=AUTH, timeout=30)
            pending.add_done_callback(lambda _: done.append(time.monotonic()))
            # SIGTERM once the request is being served (in flight: it and this /metrics call).
            while "normalcy_inflight_requests 2.0" not in httpx.get(url + "/metrics", headers=AUTH).text:
                assert not pending.done(), "the request finished before the signal could be sent"
                time.sleep(0.01)
            terminated = time.monotonic()
            proc.terminate()
            response = pending.result()
        assert done[0] > terminated  # the request was in flight when the signal came, and still answered
        assert response.status_code == 200 and len(response.json()["outputs"][0]["data"]) == n
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has drained
    finally:
        proc.kill()
    stderr = proc.stderr.read().splitlines()
    log_lines = [json.loads(line) for line in stderr if line.startswith("{")]
    assert [(x["path"], x["status"]) for x in log_lines if x["model"]] == [("/v2/models/sensor/infer", 200)]
    # The names and URLs, at start: tx.model is served as "tx".
    assert stderr[:4] == [f"serving 2 model(s) on {url} (bearer token required)",
                          f"  tx      {url}/v2/models/tx/infer  ({models['tx']})",
                          f"  sensor  {url}/v2/models/sensor/infer  ({models['sensor']})",
                          f"  page: {url}/"]


def test_serve_bench_reports_both_modes_and_bodies_with_no_errors(models, tmp_path):
    from normalcy.serve.bench import run

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"inputs": [{"name": "values", "datatype": "FP64", "shape": [40],
                                               "data": [0.5] * 40}]}))
    json_file, md_file, records = run(models["sensor"], None, request, requests=12, concurrency=3, workers=2,
                                      threads=1, outputs=["score"], json_path=tmp_path / "bench.json", binary=True)
    doc = json.loads(json_file.read_text())
    assert [(r["mode"], r["body"], r["threads"]) for r in doc["records"]] == [
        ("in-process", "JSON", 1), ("in-process", "JSON", 2), ("served", "JSON", 1), ("served", "binary", 1)]
    for r in doc["records"]:
        assert r["errors"] == 0 and r["items"] == 12 * 40 and r["throughput_per_s"] > 0
        assert 0 < r["p50_ms"] <= r["p99_ms"]
    best = max(r["throughput_per_s"] for r in doc["records"][:2])
    assert doc["records"][3]["relative"] == pytest.approx(doc["records"][3]["throughput_per_s"] / best)
    assert "| served | binary |" in md_file.read_text()
