"""Train the shipped model on cluttered colour Fashion-MNIST, in PyTorch, on the CPU.

    python examples/train_cluttered.py --epochs 12 --out runs/cluttered

Writes ``<out>/checkpoint.pt`` (the state dict, BatchNorm still separate) and
``<out>/history.json`` (the learning curve). ``examples/export_cluttered.py`` then folds each
BatchNorm into its convolution and writes ``minicnn/io/data/cluttered_fmnist.npz`` for
minicnn, which needs no PyTorch at all.

The network is VGG-style (Simonyan & Zisserman 2014): 3x3 convolutions with padding 1, each
followed by BatchNorm and ReLU, 2x2 max-pools, then two dense layers. BatchNorm is there only
to make training work (without it the plain net sat at chance for an epoch here); folded at
export, the network minicnn runs is plain Conv2d / ReLU / MaxPool2d / Flatten / Linear.

Fresh clutter every epoch: epoch e uses dataset indices e*60000 + i, so each item comes back
with a new background, tint, size, position and distractors. The first epoch mixes in some
easy images (centred, large, flat background) as a short curriculum.

``--bf16`` asks for bfloat16 autocast, which is about twice as fast on CPUs that run bf16
natively (AVX-512 BF16 or AMX on recent Intel) and SLOWER on others, including some that
advertise the instructions: the script times a few steps both ways first and keeps bf16 only
if it pays, saying so in one line. history.json records the CPU, the precision used and the
minutes of every epoch, so the cost of a rerun is known before starting one.

Needs torch (``pip install torch==2.13.0``) and the Fashion-MNIST files (see minicnn.io.datasets).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minicnn.io.datasets import (CLASS_NAMES, DatasetNotFoundError, load_fashion_mnist,  # noqa: E402
                                 make_cluttered)

MEAN, STD = 0.5, 0.25  # input normalisation: x = (pixel/255 - MEAN) / STD, every channel
CHUNK = 1024           # images generated per data-loader item


def build_model() -> nn.Module:
    """The training-time network: (N, 3, 64, 64) -> (N, 10) pre-softmax scores."""
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    features = nn.Sequential(
        *block(3, 32), nn.MaxPool2d(2),                       # (N, 32, 32, 32)
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2),      # (N, 64, 16, 16)
        *block(64, 128), *block(128, 128), nn.MaxPool2d(2),   # (N, 128, 8, 8)
        *block(128, 192), nn.MaxPool2d(2),                    # (N, 192, 4, 4)
    )
    classifier = nn.Sequential(
        nn.Flatten(),                                         # (N, 3072)
        nn.Linear(192 * 4 * 4, 128), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(128, 10),
    )
    model = nn.Sequential()
    model.add_module("features", features)
    model.add_module("classifier", classifier)
    return model


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float32 (N, 3, H, W)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()  # (N, 3, H, W)
    return (x / 255.0 - MEAN) / STD


class EpochChunks(torch.utils.data.Dataset):
    """Chunk k of epoch e: CHUNK freshly generated training images (generated in a worker)."""

    def __init__(self, epoch, n_images, seed, easy_fraction, data_dir):
        self.epoch, self.n, self.seed = epoch, n_images, seed
        self.easy_fraction, self.data_dir = easy_fraction, data_dir
        self.order = np.random.default_rng([seed, 99, epoch]).permutation(n_images)

    def __len__(self):
        return math.ceil(self.n / CHUNK)

    def __getitem__(self, k):
        items = self.order[k * CHUNK:(k + 1) * CHUNK]
        rng = np.random.default_rng([self.seed, 98, self.epoch, k])
        easy = rng.random(len(items)) < self.easy_fraction
        b = make_cluttered(self.epoch * self.n + items, "train", self.seed, self.data_dir, easy)
        return to_tensor(b.images), torch.from_numpy(b.labels)


def cpu_model() -> str:
    """The processor's name, e.g. 'AMD EPYC 9R14' (Linux: /proc/cpuinfo), and its cores."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {torch.get_num_threads()} threads"


def seconds_per_step(model, loss_fn, batch, bf16, steps=3):
    """Median time of a training step (forward, loss, backward) on random data."""
    model = copy.deepcopy(model)
    x = torch.randn(batch, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    times = []
    for _ in range(steps + 1):                   # the first step warms up
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def choose_bf16(model, loss_fn, batch) -> bool:
    """bf16 autocast only where it is faster than float32 on this CPU; one line either way."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        print(f"--bf16: this CPU ({cpu_model()}) has no bf16 support in PyTorch; "
              f"training in float32", flush=True)
        return False
    fp32, bf16 = (seconds_per_step(model, loss_fn, batch, b) for b in (False, True))
    keep = bf16 < 0.9 * fp32
    print(f"--bf16: a step takes {bf16:.2f} s with bf16 autocast, {fp32:.2f} s in float32 on "
          f"this CPU ({cpu_model()}): training in {'bf16' if keep else 'float32'}", flush=True)
    return keep


@torch.no_grad()
def evaluate(model, x, y, batch=500):
    model.eval()
    preds = torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    model.train()
    return (preds == y).float().mean().item(), preds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0, help="dataset and training seed")
    p.add_argument("--easy-fraction", type=float, default=0.3, help="in epoch 1 only")
    p.add_argument("--eval-images", type=int, default=2000, help="test images checked per epoch")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast where it is faster than float32 on this CPU (timed "
                        "first; about 2x on CPUs that run bf16 natively)")
    p.add_argument("--out", default="runs/cluttered")
    args = p.parse_args(argv)

    n_train = len(load_fashion_mnist("train", args.data_dir)[1])   # the data first
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    test = make_cluttered(range(10_000), "test", args.seed, args.data_dir)
    x_test, y_test = to_tensor(test.images), torch.from_numpy(test.labels)

    model = build_model().to(memory_format=torch.channels_last)
    steps_per_epoch = math.ceil(n_train / args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.2)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)

    bf16 = args.bf16 and choose_bf16(model, loss_fn, args.batch)
    history = {"args": vars(args), "cpu": cpu_model(), "precision": "bf16" if bf16 else "float32",
               "epochs": []}
    start = time.time()
    for epoch in range(args.epochs):
        epoch_start = time.time()
        easy = args.easy_fraction if epoch == 0 else 0.0
        loader = torch.utils.data.DataLoader(
            EpochChunks(epoch, n_train, args.seed, easy, args.data_dir),
            batch_size=None, num_workers=1, prefetch_factor=2)
        seen, loss_sum, correct = 0, 0.0, 0
        for xb_chunk, yb_chunk in loader:
            xb_chunk = xb_chunk.contiguous(memory_format=torch.channels_last)
            for i in range(0, len(yb_chunk), args.batch):
                xb, yb = xb_chunk[i:i + args.batch], yb_chunk[i:i + args.batch]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    scores = model(xb)
                    loss = loss_fn(scores.float(), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched.last_epoch < sched.total_steps - 1:
                    sched.step()
                seen += len(yb)
                loss_sum += loss.item() * len(yb)
                correct += (scores.argmax(1) == yb).sum().item()
            print(f"\repoch {epoch + 1}/{args.epochs}  {seen}/{n_train}  "
                  f"loss {loss_sum / seen:.3f}  train acc {correct / seen:.3f}  "
                  f"{time.time() - start:.0f}s", end="", flush=True)
        acc, _ = evaluate(model, x_test[:args.eval_images], y_test[:args.eval_images])
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "test_acc_subset": acc, "minutes": (time.time() - start) / 60,
               "epoch_minutes": (time.time() - epoch_start) / 60}
        history["epochs"].append(row)
        print(f"\nepoch {epoch + 1}: test acc ({args.eval_images} images) {acc:.4f}", flush=True)
        torch.save(model.state_dict(), out / "checkpoint.pt")
        (out / "history.json").write_text(json.dumps(history, indent=1))

    acc, preds = evaluate(model, x_test, y_test)
    per_class = {CLASS_NAMES[c]: float((preds[y_test == c] == c).float().mean()) for c in range(10)}
    history.update(test_acc=acc, per_class_test_acc=per_class,
                   minutes=(time.time() - start) / 60, torch_version=torch.__version__)
    (out / "history.json").write_text(json.dumps(history, indent=1))
    print(f"final test accuracy on 10,000 images: {acc:.4f}")
    print("per class:", json.dumps(per_class, indent=1))


if __name__ == "__main__":
    try:
        main()
    except DatasetNotFoundError as error:  # one line, with this script's own option
        print(f"train_cluttered.py: error: {error.for_option('--data-dir DIR')}", file=sys.stderr)
        sys.exit(2)
