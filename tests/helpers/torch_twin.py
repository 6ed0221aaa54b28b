"""Test helper: the same network in PyTorch, built from a minicnn model's config and weights.

Used as the oracle: whatever minicnn computes, the twin computes with torch's own kernels
and autograd. torch is imported inside the functions, so test modules can import this one
whether or not torch is installed; the tests that call it take the ``torch`` fixture, which
skips them without torch.
"""
import numpy as np


def _torch_layer(cfg):
    from torch import nn
    kind = cfg["type"]
    if kind == "Conv2d":
        return nn.Conv2d(cfg["in_channels"], cfg["out_channels"], tuple(cfg["kernel_size"]),
                         tuple(cfg["stride"]), tuple(cfg["padding"]), bias=cfg.get("bias", True))
    if kind == "Linear":
        return nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg.get("bias", True))
    if kind == "ReLU":
        return nn.ReLU()
    if kind == "MaxPool2d":
        return nn.MaxPool2d(tuple(cfg["kernel_size"]), tuple(cfg["stride"]), tuple(cfg["padding"]),
                            ceil_mode=cfg.get("ceil_mode", False))
    if kind == "AvgPool2d":
        return nn.AvgPool2d(tuple(cfg["kernel_size"]), tuple(cfg["stride"]), tuple(cfg["padding"]),
                            ceil_mode=cfg.get("ceil_mode", False),
                            count_include_pad=cfg.get("count_include_pad", True))
    if kind == "AdaptiveAvgPool2d":
        return nn.AdaptiveAvgPool2d(tuple(cfg["output_size"]))
    if kind == "Flatten":
        return nn.Flatten()
    if kind == "Dropout":
        return nn.Dropout(cfg.get("p", 0.5))
    raise ValueError(f"torch_twin: no torch layer for {kind}")


def torch_twin(model, dtype=None):
    """nn.Sequential computing what `model` computes, with its weights, in eval mode (float64
    unless another torch dtype is given)."""
    import torch
    from torch import nn
    dtype = torch.float64 if dtype is None else dtype
    layers = []
    for cfg, layer in zip(model.config(), model.layers):
        t = _torch_layer(cfg)
        for pname, value in layer.parameters().items():
            getattr(t, pname).data = torch.from_numpy(np.array(value, dtype=np.float64))
        layers.append(t)
    return nn.Sequential(*layers).to(dtype).eval()


def torch_input_gradient(net, x, targets):
    """Scores and d(score[n, targets[n]])/dx by autograd. x: numpy (N, C, H, W)."""
    import torch
    xt = torch.from_numpy(np.ascontiguousarray(x)).clone().requires_grad_(True)
    scores = net(xt)
    scores[torch.arange(len(targets)), torch.as_tensor(targets)].sum().backward()
    return scores.detach().numpy(), xt.grad.numpy()


def captum(method_class, net, x, *args, **kwargs):
    """Run a Captum attribution (e.g. captum.attr.GuidedBackprop) on a fresh float64 tensor of
    x -> numpy."""
    import torch
    out = method_class(net, *args).attribute(torch.from_numpy(x.copy()), **kwargs)
    return out.detach().numpy()
