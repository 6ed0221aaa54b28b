"""Test helper: the same network in PyTorch, built from a minicnn model's config and weights.

Used as the oracle: whatever minicnn computes, the twin computes with torch's own kernels
and autograd. Imported only by tests that have already done pytest.importorskip("torch").
"""
import numpy as np
import torch
from torch import nn


def _torch_layer(cfg):
    kind = cfg["type"]
    if kind == "Conv2d":
        return nn.Conv2d(cfg["in_channels"], cfg["out_channels"], tuple(cfg["kernel_size"]),
                         tuple(cfg["stride"]), tuple(cfg["padding"]), bias=cfg.get("bias", True))
    if kind == "Linear":
        return nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg.get("bias", True))
    if kind == "ReLU":
        return nn.ReLU()
    if kind == "MaxPool2d":
        return nn.MaxPool2d(tuple(cfg["kernel_size"]), tuple(cfg["stride"]), tuple(cfg["padding"]))
    if kind == "AvgPool2d":
        return nn.AvgPool2d(tuple(cfg["kernel_size"]), tuple(cfg["stride"]), tuple(cfg["padding"]))
    if kind == "AdaptiveAvgPool2d":
        return nn.AdaptiveAvgPool2d(tuple(cfg["output_size"]))
    if kind == "Flatten":
        return nn.Flatten()
    if kind == "Dropout":
        return nn.Dropout(cfg.get("p", 0.5))
    raise ValueError(f"torch_twin: no torch layer for {kind}")


def torch_twin(model, dtype=torch.float64) -> nn.Sequential:
    """nn.Sequential computing what `model` computes, with its weights, in eval mode."""
    layers = []
    for cfg, layer in zip(model.config(), model.layers):
        t = _torch_layer(cfg)
        for pname, value in layer.parameters().items():
            getattr(t, pname).data = torch.from_numpy(np.array(value, dtype=np.float64))
        layers.append(t)
    return nn.Sequential(*layers).to(dtype).eval()


def torch_input_gradient(net, x, targets):
    """Scores and d(score[n, targets[n]])/dx by autograd. x: numpy (N, C, H, W)."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).clone().requires_grad_(True)
    scores = net(xt)
    scores[torch.arange(len(targets)), torch.as_tensor(targets)].sum().backward()
    return scores.detach().numpy(), xt.grad.numpy()
