"""The HTTP service against a real uvicorn server on a loopback port, with httpx as the client.

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

from normalcy.cli.serve import check_host, read_token
from normalcy.core.errors import DataError
from normalcy.core.modelfile import load
from normalcy.core.threshold import Fixed
from normalcy.events import Frequency
from normalcy.logs.model import LogModel
from normalcy.serve.app import create_app
from normalcy.serve.codec import Limits
from normalcy.tabular import ECOD
from normalcy.timeseries import RollingMAD

from conftest import make_detector, paste_square, texture

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
    image.calibrate(image_data.calib, Fixed(float(np.max(image.score(image_data.normal)))))
    out = {"parts": image.save(root / "parts")}
    out["parts-global"] = make_detector("gaussian").fit(image_data.train).save(root / "parts-global")

    table = pd.DataFrame({"amount": rng.normal(100, 10, 300), "items": rng.integers(1, 5, 300),
                          "country": rng.choice(["de", "fr", "it"], 300)})
    ecod = ECOD().fit(table)
    ecod.threshold_ = float(np.quantile(ecod.score(table), 0.99))
    out["tx"] = ecod.save(root / "tx")

    series = RollingMAD(history=30, warmup=10).fit(np.sin(np.arange(300) / 5) + rng.normal(0, 0.05, 300))
    series.threshold_ = 3.0
    out["sensor"] = series.save(root / "sensor")
    pair = RollingMAD(history=30, warmup=10, likelihood=False).fit(rng.normal(size=(200, 2)))
    out["pair"] = pair.save(root / "pair")

    events = pd.DataFrame({"user": rng.choice(["ann", "bob", "cy"], 300), "host": rng.choice(["h1", "h2"], 300)})
    freq = Frequency().fit(events)
    freq.threshold_ = float(np.quantile(freq.score(events), 0.95))
    out["logins"] = freq.save(root / "logins")

    logs = LogModel("unseen", group_by=r"session (\d+)").fit(LOG_LINES)
    out["app-logs"] = logs.save(root / "app-logs")

    from normalcy.text import TextDetector

    out["notes"] = TextDetector(options={"n_neighbors": 1}).fit(TEXTS).save(root / "notes")
    return out


@pytest.fixture(scope="module")
def server(models):
    app = create_app([(name, path) for name, path in models.items()], token=TOKEN, workers=2, threads=1)
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
    assert client.get("/v2").json()["extensions"] == ["model_repository"]
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
    scores, maps = detector.score_maps(np.stack(images))  # PNG is lossless: the same pixels
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
    np.testing.assert_allclose(out["score"]["data"], load(models["parts-global"]).score(image_data.normal[1:2]),
                               rtol=1e-6)


def test_tabular_scores_equal_in_process(client, models):
    rows = pd.DataFrame({"amount": [101.0, 400.0, 95.5], "items": [2, 3, 1], "country": ["de", "fr", "zz"]})
    body = {"inputs": [{"name": "amount", "datatype": "FP64", "shape": [3], "data": rows["amount"].tolist()},
                       {"name": "items", "datatype": "INT64", "shape": [3], "data": rows["items"].tolist()},
                       {"name": "country", "datatype": "BYTES", "shape": [3], "data": rows["country"].tolist()}]}
    out = outputs(infer(client, "tx", body))
    detector = load(models["tx"])
    expected = detector.score(rows)
    np.testing.assert_allclose(out["score"]["data"], expected, rtol=1e-9)
    assert out["label"]["data"] == [bool(s >= detector.threshold_) for s in expected]
    assert out["label"]["data"][1] is True  # 400 is 30 standard deviations out


def test_null_is_a_missing_value_filled_as_in_process(client, models):
    body = {"inputs": [{"name": "amount", "datatype": "FP64", "shape": [2], "data": [None, 99.0]},
                       {"name": "items", "datatype": "INT64", "shape": [2], "data": [2, 2]},
                       {"name": "country", "datatype": "BYTES", "shape": [2], "data": ["de", "de"]}]}
    rows = pd.DataFrame({"amount": [np.nan, 99.0], "items": [2, 2], "country": ["de", "de"]})
    np.testing.assert_allclose(outputs(infer(client, "tx", body))["score"]["data"], load(models["tx"]).score(rows),
                               rtol=1e-9)


def test_timeseries_scores_equal_in_process_and_do_not_change_the_model(client, models):
    values = np.sin(np.arange(300, 360) / 5)
    values[40] = 5.0
    body = {"inputs": [{"name": "values", "datatype": "FP32", "shape": [60], "data": values.tolist()}]}
    first, again = outputs(infer(client, "sensor", body)), outputs(infer(client, "sensor", body))
    expected = load(models["sensor"]).score(values.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(first["score"]["data"], expected, rtol=1e-9)
    assert first["score"]["data"] == again["score"]["data"]
    assert first["label"]["data"][40] is True


def test_multivariate_series_nested_rows(client, models):
    rows = np.random.default_rng(1).normal(size=(25, 2))
    body = {"inputs": [{"name": "values", "datatype": "FP64", "shape": [25, 2], "data": rows.tolist()}]}
    np.testing.assert_allclose(outputs(infer(client, "pair", body))["score"]["data"],
                               load(models["pair"]).score(rows), rtol=1e-9)


def test_events_scores_equal_in_process(client, models):
    frame = pd.DataFrame({"user": ["ann", "bob", "mallory"], "host": ["h1", "h2", "h9"]})
    body = {"inputs": [{"name": c, "datatype": "BYTES", "shape": [3], "data": frame[c].tolist()}
                       for c in ("user", "host")]}
    out = outputs(infer(client, "logins", body))
    np.testing.assert_allclose(out["score"]["data"], load(models["logins"]).score(frame), rtol=1e-9)
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
    scores, nearest = load(models["notes"]).score_with_evidence(texts)
    np.testing.assert_allclose(out["score"]["data"], scores, rtol=1e-6, atol=1e-6)
    assert out["nearest"]["data"] == nearest
    assert out["score"]["data"][1] > out["score"]["data"][0]


def test_concurrent_requests_get_their_own_scores(client, models, image_data):
    images = list(image_data.test)
    detector = load(models["parts"])
    expected = detector.score(np.stack(images))
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
        np.testing.assert_allclose(scores, sensor.score(values), rtol=1e-9)


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


# --- the command line --------------------------------------------------------------------------------


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "normalcy", *args], capture_output=True, text=True, timeout=timeout)


def test_cli_refuses_a_public_address_without_a_token(models):
    result = run_cli("serve", str(models["tx"]), "--host", "0.0.0.0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: refusing to listen on 0.0.0.0 without a token: anyone who can reach it could use the models; "
        "give --token-file FILE, or listen on 127.0.0.1 behind a proxy"]


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
    proc = subprocess.Popen([sys.executable, "-m", "normalcy", "serve", "--name", f"sensor={models['sensor']}",
                             "--port", str(port), "--token-file", str(token)],
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
            time.sleep(0.2)
            terminated = time.monotonic()
            proc.terminate()
            response = pending.result()
        assert done[0] > terminated  # the request was in flight when the signal came, and still answered
        assert response.status_code == 200 and len(response.json()["outputs"][0]["data"]) == n
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has drained
    finally:
        proc.kill()
    log_lines = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
    assert [(x["path"], x["status"]) for x in log_lines if x["model"]] == [("/v2/models/sensor/infer", 200)]


def test_serve_bench_reports_both_modes_with_no_errors(models, tmp_path):
    from normalcy.serve.bench import run

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"inputs": [{"name": "values", "datatype": "FP64", "shape": [40],
                                               "data": [0.5] * 40}]}))
    json_file, md_file, records = run(models["sensor"], None, request, requests=12, concurrency=3, workers=2,
                                      threads=1, outputs=["score"], json_path=tmp_path / "bench.json")
    doc = json.loads(json_file.read_text())
    assert [(r["mode"], r["threads"]) for r in doc["records"]] == [("in-process", 1), ("in-process", 2),
                                                                   ("served", 1)]
    for r in doc["records"]:
        assert r["errors"] == 0 and r["items"] == 12 * 40 and r["throughput_per_s"] > 0
        assert 0 < r["p50_ms"] <= r["p99_ms"]
    best = max(r["throughput_per_s"] for r in doc["records"][:2])
    assert doc["records"][2]["relative"] == pytest.approx(doc["records"][2]["throughput_per_s"] / best)
    assert "| served |" in md_file.read_text()
