"""The light runtime (normalcy.runtime): exported models through the CLI and the server, in a
process where torch cannot be imported, with the torch model's results; and its refusals."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from normalcy.core.errors import DataError, NotFittedError
from normalcy.runtime import is_exported, load

from clirunner import run_in_process as run
from conftest import make_detector

pytest.importorskip("onnxruntime")

# Run before anything else in a fresh interpreter: `import torch` fails there as in a runtime
# install, and the script checks at its end that no torch (nor faiss) module was loaded.
NO_TORCH = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "faiss"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
"""


@pytest.fixture(scope="module")
def folder_and_export(image_data, tmp_path_factory):
    """A calibrated PatchCore's model folder, its ONNX export, and test images as PNG files."""
    root = tmp_path_factory.mktemp("runtime")
    det = make_detector("patchcore").fit(image_data.train)
    det.set_threshold(float(np.median(det.decision_function(image_data.test))))
    det.save(root / "parts.model")
    images = root / "images"
    images.mkdir()
    for i, image in enumerate(image_data.test):
        Image.fromarray(image).save(images / f"{i:03d}.png")
    result = run("image", "export", str(root / "parts.model"), "--format", "onnx", "--out", str(root / "parts.onnx"))
    assert result.returncode == 0, result.stderr
    assert "exported patchcore" in result.stdout
    return root / "parts.model", root / "parts.onnx", images


def read_rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_predict_on_an_export_without_torch_writes_the_model_folders_results(folder_and_export, tmp_path):
    folder, onnx_file, images = folder_and_export
    assert run("image", "predict", str(folder), str(images), "--out", str(tmp_path / "torch")).returncode == 0
    script = NO_TORCH + textwrap.dedent(f"""
        from normalcy.cli.main import main
        sys.argv = ["normalcy", "image", "predict", {str(onnx_file)!r}, {str(images)!r}, "--out",
                    {str(tmp_path / "light")!r}, "--threads", "1"]
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "faiss"))
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    expected, got = read_rows(tmp_path / "torch" / "results.csv"), read_rows(tmp_path / "light" / "results.csv")
    assert list(got[0]) == list(expected[0]) == ["path", "score", "label", "threshold", "overlay", "error"]
    assert [r["path"] for r in got] == [r["path"] for r in expected]
    np.testing.assert_allclose([float(r["score"]) for r in got], [float(r["score"]) for r in expected], rtol=1e-4)
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    assert {r["label"] for r in got} == {"0", "1"}
    assert [r["threshold"] for r in got] == [r["threshold"] for r in expected]
    for row in got:
        assert Image.open(tmp_path / "light" / row["overlay"]).size == Image.open(row["path"]).size


def test_the_server_serves_an_export_without_torch(folder_and_export, image_data):
    folder, onnx_file, images = folder_and_export
    script = NO_TORCH + textwrap.dedent(f"""
        import io, json
        import numpy as np
        from normalcy.serve.app import load_models
        from normalcy.serve.codec import Limits
        models = load_models([("parts", {str(onnx_file)!r})], Limits())
        codec = models["parts"].codec
        assert codec.parameters()["detector"] == "PatchCore" and codec.parameters()["exported"] is True
        data = [open(p, "rb").read() for p in sorted(__import__("glob").glob({str(images)!r} + "/*.png"))]
        out = {{o.name: o for o in codec.predict(codec.decode({{"image": type("T", (), {{"data": data}})()}}, {{}}),
                                                 {{"overlay": True}})}}
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "faiss"))
        assert not loaded, loaded
        print(json.dumps({{"score": out["score"].data.tolist(), "label": out["label"].data.tolist(),
                          "map": list(out["anomaly_map"].data.shape), "overlays": len(out["overlay"].data)}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    import json

    served = json.loads(result.stdout.strip().splitlines()[-1])
    from normalcy.image.base import ImageDetector

    det = ImageDetector.load(folder)
    np.testing.assert_allclose(served["score"], det.decision_function(image_data.test), rtol=1e-4)
    assert served["label"] == [bool(v) for v in det.predict(image_data.test)]
    assert served["map"] == [len(image_data.test), det.image_size, det.image_size]
    assert served["overlays"] == len(image_data.test)


def test_bad_exports_are_refused_clearly(folder_and_export, tmp_path):
    folder, onnx_file, images = folder_and_export
    with pytest.raises(DataError, match="not found"):
        load(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(DataError, match="junk.onnx"):
        load(tmp_path / "junk.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not an OpenVINO export"):
        load(tmp_path / "empty")
    assert is_exported(onnx_file) and not is_exported(folder)
    # An ONNX model that is not a normalcy export: the metadata is missing.
    import onnx

    model = onnx.load(str(onnx_file))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "plain.onnx"))
    with pytest.raises(DataError, match="not a normalcy export"):
        load(tmp_path / "plain.onnx")
    # Through the CLI: one clear line, no results written.
    result = run("image", "predict", str(tmp_path / "junk.onnx"), str(images), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and result.stderr.startswith("error:") and "junk.onnx" in result.stderr
    assert not (tmp_path / "o" / "results.csv").exists()
    result = run("image", "export", str(folder), "--format", "onnx", "--out", str(tmp_path / "x.onnx"), "--int8")
    assert result.returncode == 2 and "calibration" in result.stderr


def test_an_export_without_a_threshold_scores_but_does_not_label(image_data, tmp_path):
    from normalcy.image.export import export

    det = make_detector("gaussian").fit(image_data.train)
    model = load(export(det, "onnx", tmp_path / "g.onnx"))
    np.testing.assert_allclose(model.decision_function(image_data.test), det.decision_function(image_data.test),
                               rtol=1e-4)
    with pytest.raises(NotFittedError, match="threshold"):
        model.predict(image_data.test)
    with pytest.raises(DataError, match="whole images only"):
        model.explain(image_data.test)


def test_the_server_names_an_onnx_file_by_its_stem_and_gives_its_session_the_threads(folder_and_export):
    from normalcy.serve.app import load_models
    from normalcy.serve.codec import Limits

    _, onnx_file, _ = folder_and_export
    for threads, intra in ((1, 1), (None, 0)):  # 0: onnxruntime's own choice
        models = load_models([onnx_file], Limits(), threads)
        assert list(models) == ["parts"]
        session = models["parts"].codec.detector._runner.session
        assert session.get_session_options().intra_op_num_threads == intra


def test_evaluate_takes_an_export_and_gives_the_model_folders_figures(tmp_path):
    from normalcy.image.demo import make_dataset

    data = make_dataset(tmp_path / "parts", n_train=8, n_good=3, n_per_defect=2)
    assert run("image", "fit", "--data", str(data), "--out", str(tmp_path / "m"), "--image-size", "64",
               "--threads", "1", "--holdout", "0.25").returncode == 0
    assert run("image", "export", str(tmp_path / "m"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")).returncode == 0
    figures = {}
    for name in ("m", "m.onnx"):
        result = run("image", "evaluate", str(tmp_path / name), "--data", str(data), "--json", str(tmp_path / f"{name}.json"))
        assert result.returncode == 0, result.stderr
        figures[name] = json.loads((tmp_path / f"{name}.json").read_text())
    torch_figures, exported = figures["m"], figures["m.onnx"]
    assert exported["detector"] == torch_figures["detector"] == "PatchCore" and exported["exported"] is True
    assert "exported" not in torch_figures
    for key in ("image_auroc", "pixel_auroc", "aupro", "n_images_with_masks", "recall_at_threshold"):
        assert exported[key] == pytest.approx(torch_figures[key], abs=1e-4), key
    assert 0.0 < torch_figures["pixel_auroc"] < 1.0  # maps were compared, not two constants
