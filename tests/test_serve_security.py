"""The security modalities on the HTTP service, against a real uvicorn server on loopback:
the embedding signing and verification endpoints (token required, per-row verdicts with
reasons, signatures interchangeable with the in-process ones) and embedding, alert and API
models through the inference path, served scores equal to in-process ones."""

from __future__ import annotations

import base64
import hashlib
import json

import httpx
import numpy as np
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import contract_alerts
import contract_api
from clirunner import run_in_process
from normalcy.core.errors import DataError
from normalcy.core.registry import build
from normalcy.embeddings import keys, pin
from normalcy.embeddings.service import SigningService
from normalcy.serve.app import create_app
from test_serve import Server

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DIM = 16
MODEL_ID = "all-MiniLM-L6-v2"


def vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


TEXTS = [f"document {i}: the pump pressure is normal" for i in range(12)]


def sign_body(matrix: np.ndarray, **extra) -> dict:
    # tolist() gives each float32 as the exact double it is: what a numpy or JavaScript client sends.
    return {"model_id": MODEL_ID, "embeddings": matrix.tolist(), "content": TEXTS[:len(matrix)], **extra}


@pytest.fixture(scope="module")
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("security-models")
    store = build("embeddings", "moments").fit(vectors(200, seed=1))
    store.set_threshold(float(np.quantile(store.decision_function(vectors(200, seed=1)), 0.99)))
    alerts_case, api_case = contract_alerts.case(), contract_api.case()
    car = build("alerts", "car", contract_alerts.PARAMS["car"]).fit(alerts_case.fit)
    car.set_threshold(0.5)
    mines = build("api", "mines", contract_api.PARAMS["mines"]).fit(api_case.fit)
    mines.set_threshold(1.0)
    return {"store": store.save(root / "store"), "soc": car.save(root / "soc"), "shop": mines.save(root / "shop"),
            "alerts_test": alerts_case.test, "api_test": api_case.test}


@pytest.fixture(scope="module")
def client(models, key):
    folders = [(name, models[name]) for name in ("store", "soc", "shop")]
    app = create_app(folders, token=TOKEN, signing=SigningService(key), workers=2, threads=1)
    with Server(app) as server, httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as c:
        yield c


def post(client, path: str, body, **kw) -> httpx.Response:
    return client.post(f"/v2/embeddings/{path}", json=body, **kw)


def signed(client, matrix: np.ndarray, **extra) -> dict:
    response = post(client, "sign", sign_body(matrix, **extra))
    assert response.status_code == 200, response.text
    return response.json()


def verify_body(matrix: np.ndarray, pins: dict, **extra) -> dict:
    return {**sign_body(matrix), **{k: v for k, v in pins.items() if k != "dim"}, **extra}


# --- signing and verification --------------------------------------------------------------------


def test_signatures_over_http_verify_in_process_and_name_the_key(client, key):
    matrix = vectors(10)
    pins = signed(client, matrix)
    assert pins["key_id"] == pin.key_id(key.public_key()) and pins["dim"] == DIM and pins["dtype"] == "float32"
    hashes = [hashlib.sha256(t.encode()).digest() for t in TEXTS[:10]]
    assert pins["content_sha256"] == [h.hex() for h in hashes]
    rows = [matrix[i].astype("<f4").tobytes() for i in range(10)]
    as_pins = pin.Pins(pins["key_id"], [bytes.fromhex(h) for h in pins["vector_sha256"]], pins["leaf"],
                       pins["leaves"], [base64.b64decode(p) for p in pins["proof"]],
                       [base64.b64decode(s) for s in pins["signature"]])
    assert pin.verify(rows, "<f4", DIM, hashes, [MODEL_ID] * 10, as_pins, key.public_key()) == [None] * 10
    # and a signature made in-process verifies over HTTP
    local = pin.sign(matrix, hashes, MODEL_ID, key)
    body = verify_body(matrix, {**pins, "proof": [base64.b64encode(p).decode() for p in local.proof],
                                "signature": [base64.b64encode(s).decode() for s in local.signature]})
    assert post(client, "verify", body).json()["ok"] is True


def test_untouched_rows_pass_and_each_change_fails_with_its_reason(client):
    matrix = vectors(8)
    pins = signed(client, matrix, metadata=[{"row": i} for i in range(8)])
    body = verify_body(matrix, pins, metadata=[{"row": i} for i in range(8)])
    ok = post(client, "verify", body).json()
    assert ok == {"ok": True, "n": 8, "failures": 0, "verified": [True] * 8, "reasons": [None] * 8}

    changed = matrix.copy()
    changed[1, 3] = np.nextafter(changed[1, 3], np.float32(2))  # one ulp
    angle = 0.01  # a small rotation in the plane of the first two dimensions: retrieval barely moves
    c, s = np.cos(angle), np.sin(angle)
    changed[2, :2] = [c * matrix[2, 0] - s * matrix[2, 1], s * matrix[2, 0] + c * matrix[2, 1]]
    texts = list(TEXTS[:8])
    texts[4] = texts[4] + " (edited)"
    models = [MODEL_ID] * 8
    models[5] = "another-model"
    meta = [{"row": i} for i in range(8)]
    meta[6] = {"row": 60}
    body = verify_body(changed, pins, content=texts, model_id=models, metadata=meta)
    out = post(client, "verify", body).json()
    assert out["failures"] == 5 and not out["ok"]
    assert [i for i, v in enumerate(out["verified"]) if not v] == [1, 2, 4, 5, 6]
    reasons = out["reasons"]
    assert reasons[1] == reasons[2] == pin.VECTOR_CHANGED
    assert reasons[4].startswith("content changed since signing")
    assert reasons[5] == reasons[6] == pin.SIGNATURE_FAILS
    assert reasons[0] is reasons[3] is reasons[7] is None


def test_shortest_float32_decimals_sign_as_the_same_values(client):
    matrix = vectors(3)
    exact = signed(client, matrix)
    shortest = [[float(str(v)) for v in row] for row in matrix]  # numpy's float32 repr, e.g. 0.1
    assert any(a != b for a, b in zip(np.ravel(shortest), matrix.astype(np.float64).ravel()))
    body = verify_body(matrix, exact, embeddings=shortest)
    assert post(client, "verify", body).json()["ok"] is True


def test_verify_by_content_hash_alone_and_a_forged_signature(client, key):
    matrix = vectors(4)
    pins = signed(client, matrix)
    body = {k: v for k, v in verify_body(matrix, pins).items() if k != "content"}
    assert post(client, "verify", body).json()["ok"] is True
    other = Ed25519PrivateKey.generate()
    forged = pin.sign(matrix, [bytes.fromhex(h) for h in pins["content_sha256"]], MODEL_ID, other)
    body["signature"] = [base64.b64encode(s).decode() for s in forged.signature]
    out = post(client, "verify", body).json()
    assert out["failures"] == 4 and set(out["reasons"]) == {pin.SIGNATURE_FAILS}
    body["key_id"] = forged.key_id
    reasons = post(client, "verify", body).json()["reasons"]
    assert all(r.startswith(f"signed with key '{forged.key_id}'") for r in reasons)


@pytest.mark.parametrize("path", ["sign", "verify"])
def test_signing_paths_need_the_token(client, path):
    body = sign_body(vectors(2))
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-token-0123456789"}):
        response = httpx.post(f"{client.base_url}/v2/embeddings/{path}", json=body, headers=headers)
        assert response.status_code == 401 and "bearer token" in response.json()["error"]


def bad_sign_bodies():
    good = sign_body(vectors(2))
    return [
        ("not an object", [1, 2], "must be a JSON object"),
        ("no embeddings", {**good, "embeddings": []}, "'embeddings' must be a non-empty list"),
        ("ragged", {**good, "embeddings": [[0.1] * DIM, [0.1] * 3]}, "embedding 1 must be a list of 16 numbers"),
        ("a string value", {**good, "embeddings": [[0.1] * (DIM - 1) + ["x"], [0.1] * DIM]},
         "embedding 0, value 15: 'x' is not a number"),
        ("null value", {**good, "embeddings": [[None] * DIM, [0.1] * DIM]}, "embedding 0, value 0"),
        ("beyond float32", {**good, "embeddings": [[0.1] * DIM, [1e300] * DIM]}, "embedding 1 holds a value beyond"),
        ("an integer beyond float64", {**good, "dtype": "float64", "embeddings": [[10**400] * DIM, [0.1] * DIM]},
         "embedding 0 holds a value beyond the range of float64"),
        ("a boolean", {**good, "embeddings": [[True] * DIM, [0.1] * DIM]}, "embedding 0, value 0: True is not"),
        ("no content", {k: v for k, v in good.items() if k != "content"}, "give 'content'"),
        ("content count", {**good, "content": ["one"]}, "'content' has 1 entries for 2 embeddings"),
        ("a number as content", {**good, "content": ["one", 2]}, "content 1 must be a text"),
        ("bad hex", {**good, "content_sha256": ["zz", "00" * 32]}, "content_sha256 0 must be 64 hex digits"),
        ("hash of other text", {**good, "content_sha256": ["00" * 32, "00" * 32]},
         "content_sha256 0 is not the SHA-256 of content 0"),
        ("no model id", {**good, "model_id": 5}, "'model_id' must be"),
        ("empty model id", {**good, "model_id": ""}, "model id must be a non-empty string"),
        ("unknown dtype", {**good, "dtype": "int8"}, "'dtype' must be one of float32, float64"),
        ("metadata not objects", {**good, "metadata": [1, 2]}, "metadata 0 must be an object"),
        ("metadata NaN-like", {**good, "metadata": [{"a": [1]}, None]}, "cannot be signed"),
        ("batch size", {**good, "batch_size": 0}, "batch_size must be an integer between"),
    ]


@pytest.mark.parametrize("what,body,message", bad_sign_bodies(), ids=[c[0] for c in bad_sign_bodies()])
def test_malformed_sign_requests_are_400_naming_the_field(client, what, body, message):
    response = post(client, "sign", body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert client.get("/v2/health/live").json() == {"live": True}


def test_malformed_verify_requests_are_400_and_bad_fields_fail_their_rows(client):
    matrix = vectors(3)
    pins = signed(client, matrix)
    good = verify_body(matrix, pins)
    for body, message in [({**good, "signature": pins["signature"][:2]}, "'signature' has 2 entries for 3"),
                          ({**good, "key_id": 7}, "'key_id' must be the signing key's id"),
                          ({**good, "leaf": None}, "'leaf' must be a list")]:
        response = post(client, "verify", body)
        assert response.status_code == 400 and message in response.json()["error"], response.text
    broken = {**good, "signature": ["not base64!", *pins["signature"][1:]], "proof": [7, *pins["proof"][1:]],
              "leaf": [0, -1, 2], "content": ["\ud800", *TEXTS[1:3]]}
    broken["content_sha256"] = [*pins["content_sha256"][:2], "not hex"]
    response = client.post("/v2/embeddings/verify", content=json.dumps(broken).encode(),
                           headers={"Content-Type": "application/json"})
    out = response.json()
    assert response.status_code == 200 and out["verified"] == [False, False, False], out
    assert "signature is missing or not 64 bytes" in out["reasons"][0]
    assert "not a position in a batch" in out["reasons"][1]
    assert "content hash is missing or not a SHA-256 digest" in out["reasons"][2]
    del broken["content_sha256"][2]
    response = client.post("/v2/embeddings/verify", content=json.dumps(broken).encode())
    assert response.status_code == 400 and "'content_sha256' has 2 entries for 3" in response.json()["error"]
    for raw in (b"{not json", b"", b'{"embeddings": NaN}'):
        response = client.post("/v2/embeddings/sign", content=raw)
        assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_a_signing_server_refuses_to_start_without_a_token(key, models, tmp_path):
    with pytest.raises(DataError, match="need a bearer token"):
        create_app([models["store"]], token=None, signing=SigningService(key))
    private, public = keys.generate(tmp_path / "key")
    for flags in (["--signing-key", str(private)], ["--verify-key", str(public)]):
        result = run_in_process("serve", *flags)
        assert result.returncode == 2
        assert result.stderr.startswith("error: --signing-key and --verify-key need --token-file FILE")
    token = tmp_path / "token"
    token.write_text(TOKEN)
    other = keys.generate(tmp_path / "other")[1]
    result = run_in_process("serve", "--token-file", str(token), "--signing-key", str(private), "--verify-key",
                            str(other))
    assert result.returncode == 2 and "is not the public key of --signing-key" in result.stderr
    private.chmod(0o644)
    result = run_in_process("serve", "--token-file", str(token), "--signing-key", str(private))
    assert result.returncode == 2 and "accessible by others" in result.stderr


def test_a_verify_only_server_verifies_and_does_not_sign(key, client):
    matrix = vectors(2)
    body = verify_body(matrix, signed(client, matrix))
    app = create_app([], token=TOKEN, signing=SigningService(public_key=key.public_key()))
    with Server(app) as server, httpx.Client(base_url=server.url, headers=AUTH) as c:
        assert post(c, "verify", body).json()["ok"] is True
        response = post(c, "sign", sign_body(matrix))
        assert response.status_code == 404 and "only verifies" in response.json()["error"]
        assert "embedding_signing" in c.get("/v2").json()["extensions"]
        assert c.post("/v2/repository/index").json() == []


def test_a_server_without_keys_has_no_signing(models):
    app = create_app([models["store"]], token=TOKEN)
    with Server(app) as server, httpx.Client(base_url=server.url, headers=AUTH) as c:
        response = post(c, "sign", sign_body(vectors(2)))
        assert response.status_code == 404 and "--signing-key" in response.json()["error"]
        assert "embedding_signing" not in c.get("/v2").json()["extensions"]


# --- embedding, alert and API models through the inference path -----------------------------------


def infer(client, name, inputs):
    response = client.post(f"/v2/models/{name}/infer", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def test_embedding_model_served_as_in_process(client, models):
    from normalcy.core.modelfile import load

    detector = load(models["store"])
    test = np.concatenate([vectors(5, seed=3), 3 * vectors(5, seed=4)])
    out = infer(client, "store", [{"name": "embedding", "datatype": "FP32", "shape": list(test.shape),
                                   "data": test.ravel().tolist()}])
    np.testing.assert_allclose(out["score"], detector.decision_function(test), rtol=1e-12)
    assert out["label"] == (detector.decision_function(test) >= detector.threshold_).tolist()


def alert_inputs(frame: pd.DataFrame) -> list[dict]:
    n = len(frame)
    return [{"name": "time", "datatype": "FP64", "shape": [n], "data": frame["time"].tolist()},
            *({"name": c, "datatype": "BYTES", "shape": [n], "data": frame[c].tolist()}
              for c in ("type", "host", "user")),
            {"name": "score", "datatype": "FP64", "shape": [n], "data": frame["score"].tolist()}]


def test_alert_ranker_served_as_in_process(client, models):
    from normalcy.core.modelfile import load

    ranker, test = load(models["soc"]), models["alerts_test"]
    out = infer(client, "soc", alert_inputs(test))
    np.testing.assert_allclose(out["score"], ranker.decision_function(test), rtol=1e-9, atol=1e-12)
    assert np.mean(np.array(out["score"])[30:]) > np.mean(np.array(out["score"])[:30])  # true alerts rank higher


def test_api_model_served_as_in_process(client, models):
    from normalcy.core.modelfile import load

    detector, lines = load(models["shop"]), models["api_test"]
    out = infer(client, "shop", [{"name": "lines", "datatype": "BYTES", "shape": [len(lines)], "data": lines}])
    np.testing.assert_allclose(out["score"], detector.decision_function(lines), rtol=1e-12)
    assert out["line"] == list(range(1, len(lines) + 1))
    assert out["label"][-5:] == [True] * 5


def test_malformed_security_model_requests_are_400_and_the_server_stays_up(client, models):
    test = models["alerts_test"]
    cases = [
        ("store", [{"name": "embedding", "datatype": "FP32", "shape": [1, DIM], "data": [None] * DIM}], "vector 0"),
        ("store", [{"name": "embedding", "datatype": "FP32", "shape": [1, 3], "data": [0.1] * 3}], "shape"),
        ("soc", alert_inputs(test)[:2], "missing input"),
        ("soc", [{**i, "data": ["soon"] * len(test)} if i["name"] == "time" else i for i in alert_inputs(test)],
         "time"),
        ("shop", [{"name": "lines", "datatype": "FP64", "shape": [1], "data": [1.0]}], "datatype"),
    ]
    for name, inputs, message in cases:
        response = client.post(f"/v2/models/{name}/infer", json={"inputs": inputs})
        assert response.status_code == 400, (name, response.text)
        assert message in response.json()["error"], response.text
    assert client.get("/v2/health/live").json() == {"live": True}
