"""Export the trained cluttered-Fashion-MNIST model to ``weights/`` and make the sample images.

    python examples/export_cluttered.py --run runs/cluttered

1. rebuilds the training network and loads ``<run>/checkpoint.pt``;
2. ``minicnn.from_torch`` folds each BatchNorm into the convolution before it, giving a plain
   Conv2d / ReLU / MaxPool2d / Flatten / Linear / Dropout network;
3. measures that network's top-1 accuracy **with minicnn** (no torch) on the 10,000
   generated test images, per class as well;
4. writes ``minicnn/io/data/cluttered_fmnist.npz`` (package data; its provenance is
   weights/README.md) with the metadata (class names, preprocessing, dataset recipe and
   seed, accuracy, training command, learning curve);
5. writes ``minicnn/io/data/samples/``: the first two test images of each class (not picked for
   being classified right) and ``samples.json`` with their class and ground-truth box.

Needs torch and the Fashion-MNIST files.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
import minicnn  # noqa: E402
from minicnn.io.datasets import CLASS_NAMES, make_cluttered, DatasetNotFoundError  # noqa: E402
from minicnn.io.images import Preprocess, to_input  # noqa: E402
from train_cluttered import MEAN, STD, build_model  # noqa: E402


def accuracy_with_minicnn(model, batch, prep, chunk=250):
    preds = []
    for i in range(0, len(batch), chunk):
        preds.append(model(to_input(batch.images[i:i + chunk], prep)).argmax(1))
        print(f"\r  evaluating with minicnn: {min(i + chunk, len(batch))}/{len(batch)}",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    preds = np.concatenate(preds)
    per_class = {CLASS_NAMES[c]: round(float((preds[batch.labels == c] == c).mean()), 4)
                 for c in range(10)}
    return float((preds == batch.labels).mean()), per_class


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", default="runs/cluttered")
    p.add_argument("--out", default=str(ROOT / "minicnn" / "io" / "data" / "cluttered_fmnist.npz"))
    p.add_argument("--images", default=str(ROOT / "minicnn" / "io" / "data" / "samples"))
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)

    run = Path(args.run)
    history = json.loads((run / "history.json").read_text())
    seed = history["args"]["seed"]
    net = build_model()
    net.load_state_dict(torch.load(run / "checkpoint.pt", weights_only=True))
    net.eval()
    model = minicnn.from_torch(net)                     # BatchNorm folded here

    prep = Preprocess(resize=64, crop=64, mean=(MEAN,) * 3, std=(STD,) * 3)
    test = make_cluttered(range(10_000), "test", seed, args.data_dir)
    acc, per_class = accuracy_with_minicnn(model, test, prep)
    print(f"test accuracy (minicnn, 10,000 images): {acc:.4f}")
    a = history["args"]
    meta = {
        "name": "cluttered_fmnist",
        "description": "VGG-style CNN trained on cluttered colour Fashion-MNIST (64x64 RGB); "
                       "BatchNorm folded into the convolutions at export",
        "class_names": list(CLASS_NAMES),
        "input_shape": [3, 64, 64],
        "preprocess": prep.to_meta(),
        "dataset": {"generator": "minicnn.io.datasets.make_cluttered", "seed": seed,
                    "train": "60,000 Fashion-MNIST train items, fresh clutter every epoch",
                    "test": "range(10000) of the test split"},
        "test_accuracy": round(acc, 4),
        "per_class_test_accuracy": per_class,
        "training_command": (f"python examples/train_cluttered.py --epochs {a['epochs']} "
                             f"--batch {a['batch']} --lr {a['lr']} --seed {seed}"
                             + (" --bf16" if a.get("bf16") else "")),
        "training_minutes": round(history.get("minutes", 0), 1),
        "learning_curve": [{k: round(v, 4) for k, v in row.items()} for row in history["epochs"]],
        "trained_with": f"torch {history.get('torch_version', torch.__version__)}",
    }
    path = minicnn.save(model, args.out, meta=meta)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")

    from PIL import Image
    images_dir = Path(args.images)
    images_dir.mkdir(parents=True, exist_ok=True)
    index = {}
    for c, name in enumerate(CLASS_NAMES):
        for i in np.flatnonzero(test.labels == c)[:2]:
            fname = f"test{i:05d}_{name.split('/')[0].replace(' ', '-').lower()}.png"
            Image.fromarray(test.images[i]).save(images_dir / fname)
            index[fname] = {"index": int(i), "label": c, "class": name,
                            "box": [int(v) for v in test.boxes[i]]}
    doc = {"about": "First two images of each class from make_cluttered(range(10000), 'test', "
                    f"seed={seed}); box is (x0, y0, x1, y1) with x1, y1 exclusive.",
           "images": index}
    (images_dir / "samples.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(index)} sample images to {images_dir}")


if __name__ == "__main__":
    try:
        main()
    except DatasetNotFoundError as error:  # one line, with this script's own option
        print(f"export_cluttered.py: error: {error.for_option('--data-dir DIR')}", file=sys.stderr)
        sys.exit(2)
