"""ImageNet architectures laid out exactly as torchvision's: VGG 11/13/16/19 (+ _bn) and AlexNet.

"Exactly" means the same layer order and the same state_dict keys (``features.0.weight``,
``classifier.6.bias``, ...), so a torchvision checkpoint loads by name with no renaming.
Only the layer *configuration* is reproduced here (a fact about the published networks);
the layers themselves are minicnn's.

- VGG (Simonyan & Zisserman 2014, arXiv:1409.1556): 3x3 convolutions with padding 1, each
  followed by ReLU (and, in the ``_bn`` variants, by BatchNorm before the ReLU), 2x2 max-pools,
  ``AdaptiveAvgPool2d((7, 7))``, then Linear 25088->4096, ReLU, Dropout, 4096->4096, ReLU,
  Dropout, 4096->classes.
- AlexNet (Krizhevsky et al. 2012), torchvision's single-tower variant: five convolutions
  (11x11/4, 5x5, 3x3 x3) with three 3x3/2 max-pools, ``AdaptiveAvgPool2d((6, 6))``, then
  Dropout, Linear 9216->4096, ReLU, Dropout, 4096->4096, ReLU, 4096->classes.

minicnn has no BatchNorm layer: a ``_bn`` network is built with each BatchNorm already folded
into the convolution before it (``minicnn.fold_batchnorm``), so its convolutions keep their
torchvision names and the BatchNorm indices are simply absent. ``checkpoint_shapes`` lists
what the *unfolded* torchvision checkpoint holds, BatchNorm statistics included.
"""
from __future__ import annotations

from minicnn.engine.model import Sequential

__all__ = ["ARCHITECTURES", "build", "model_shapes", "checkpoint_shapes"]

# channels per conv; "M" is a 2x2 max-pool (the published configurations A, B, D, E)
_VGG_PLANS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}

ARCHITECTURES = tuple(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")) + ("alexnet",)


# Layers are described as configs (``layer.config()`` dicts), not built, so that listing a
# checkpoint's shapes does not allocate VGG's 138 million random weights.
def conv_cfg(c_in, c_out, k, stride=1, padding=0):
    return {"type": "Conv2d", "in_channels": c_in, "out_channels": c_out, "kernel_size": [k, k],
            "stride": [stride, stride], "padding": [padding, padding], "bias": True}


def linear_cfg(n_in, n_out):
    return {"type": "Linear", "in_features": n_in, "out_features": n_out, "bias": True}


def maxpool_cfg(k, stride):
    return {"type": "MaxPool2d", "kernel_size": [k, k], "stride": [stride, stride], "padding": [0, 0]}


def relu_cfg():
    return {"type": "ReLU"}


def dropout_cfg(p):
    return {"type": "Dropout", "p": p}


def adaptive_avgpool_cfg(size):
    return {"type": "AdaptiveAvgPool2d", "output_size": list(size)}


def flatten_cfg():
    return {"type": "Flatten"}


def _vgg_features(plan, batch_norm):
    """-> ([(torchvision name, layer config)], [(BatchNorm name, width)])."""
    layers, batchnorms, i, c_in = [], [], 0, 3
    for item in plan:
        if item == "M":
            layers.append((f"features.{i}", maxpool_cfg(2, 2)))
            i += 1
            continue
        layers.append((f"features.{i}", conv_cfg(c_in, item, 3, padding=1)))
        i += 1
        if batch_norm:                       # folded into the conv above; keep its index free
            batchnorms.append((f"features.{i}", item))
            i += 1
        layers.append((f"features.{i}", relu_cfg()))
        i += 1
        c_in = item
    return layers, batchnorms


def _head(in_features, num_classes, dropout_first):
    """torchvision's classifier: two 4096-wide hidden layers."""
    if dropout_first:                        # AlexNet: Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear
        kinds = [dropout_cfg(0.5), linear_cfg(in_features, 4096), relu_cfg(), dropout_cfg(0.5),
                 linear_cfg(4096, 4096), relu_cfg(), linear_cfg(4096, num_classes)]
    else:                                    # VGG: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear
        kinds = [linear_cfg(in_features, 4096), relu_cfg(), dropout_cfg(0.5),
                 linear_cfg(4096, 4096), relu_cfg(), dropout_cfg(0.5), linear_cfg(4096, num_classes)]
    return [(f"classifier.{i}", layer) for i, layer in enumerate(kinds)]


def _alexnet_features():
    spec = [conv_cfg(3, 64, 11, stride=4, padding=2), relu_cfg(), maxpool_cfg(3, 2),
            conv_cfg(64, 192, 5, padding=2), relu_cfg(), maxpool_cfg(3, 2),
            conv_cfg(192, 384, 3, padding=1), relu_cfg(),
            conv_cfg(384, 256, 3, padding=1), relu_cfg(),
            conv_cfg(256, 256, 3, padding=1), relu_cfg(), maxpool_cfg(3, 2)]
    return [(f"features.{i}", layer) for i, layer in enumerate(spec)]


def _parts(arch: str, num_classes: int):
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if arch == "alexnet":
        features, batchnorms = _alexnet_features(), []
        pool, head = adaptive_avgpool_cfg((6, 6)), _head(256 * 6 * 6, num_classes, True)
    else:
        depth, batch_norm = int(arch[3:5]), arch.endswith("_bn")
        features, batchnorms = _vgg_features(_VGG_PLANS[depth], batch_norm)
        pool, head = adaptive_avgpool_cfg((7, 7)), _head(512 * 7 * 7, num_classes, False)
    layers = features + [("avgpool", pool), ("flatten", flatten_cfg())] + head
    return layers, batchnorms


def build(arch: str, num_classes: int = 1000) -> Sequential:
    """A minicnn model of `arch` (see ARCHITECTURES), BatchNorm folded, weights random.

    Input (N, 3, H, W) with H, W >= 32 for VGG (63 for AlexNet); ImageNet uses 224 x 224.
    Output (N, num_classes) pre-softmax scores.
    """
    layers, _ = _parts(arch, num_classes)
    return Sequential.from_config([{"name": name, **cfg} for name, cfg in layers])


def model_shapes(arch: str, num_classes: int = 1000) -> dict:
    """{state_dict key: shape} of ``build(arch)``: convolutions and linear layers only."""
    layers, _ = _parts(arch, num_classes)
    shapes = {}
    for name, cfg in layers:
        if cfg["type"] == "Conv2d":
            shapes[f"{name}.weight"] = (cfg["out_channels"], cfg["in_channels"], *cfg["kernel_size"])
            shapes[f"{name}.bias"] = (cfg["out_channels"],)
        elif cfg["type"] == "Linear":
            shapes[f"{name}.weight"] = (cfg["out_features"], cfg["in_features"])
            shapes[f"{name}.bias"] = (cfg["out_features"],)
    return shapes


def checkpoint_shapes(arch: str, num_classes: int = 1000) -> dict:
    """{state_dict key: shape} of the torchvision checkpoint of `arch` (BatchNorm unfolded)."""
    shapes = model_shapes(arch, num_classes)
    _, batchnorms = _parts(arch, num_classes)
    for name, width in batchnorms:
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{p}"] = (width,)
        shapes[f"{name}.num_batches_tracked"] = ()
    return shapes
