"""Test helper: the same network in PyTorch, built from a minicnn model's config and weights.

Used as the oracle: whatever minicnn computes, the twin computes with torch's own kernels
and autograd. A chain becomes an nn.Sequential; a graph an nn.Module that runs its nodes in
order, each on the outputs of the nodes it reads, so that autograd adds the gradients where a
value feeds several nodes. torch is imported inside the functions, so test modules can import
this one whether or not torch is installed; the tests that call it take the ``torch``
fixture, which skips them without torch.
"""
import numpy as np


def _torch_layer(cfg):
    import torch
    from torch import nn
    kind = cfg["type"]
    if kind == "Conv2d":
        return nn.Conv2d(cfg["in_channels"], cfg["out_channels"], tuple(cfg["kernel_size"]),
                         tuple(cfg["stride"]), tuple(cfg["padding"]), bias=cfg.get("bias", True),
                         groups=cfg.get("groups", 1), dilation=tuple(cfg.get("dilation", (1, 1))))
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
    simple = {"ReLU6": nn.ReLU6, "Hardswish": nn.Hardswish, "Hardsigmoid": nn.Hardsigmoid,
              "SiLU": nn.SiLU, "Sigmoid": nn.Sigmoid}
    if kind in simple:
        return simple[kind]()
    if kind == "Hardtanh":
        return nn.Hardtanh(cfg["min_val"], cfg["max_val"])
    if kind == "ZeroPad2d":
        return nn.ZeroPad2d(tuple(cfg["padding"]))
    if kind == "ChannelShuffle":
        return nn.ChannelShuffle(cfg["groups"])
    if kind == "ChannelSlice":
        return _function_module(lambda x, a=cfg["start"], b=cfg["stop"]: x[:, a:b])
    if kind == "Add":
        return _function_module(lambda *xs: sum(xs[1:], xs[0]))
    if kind == "Concat":
        return _function_module(lambda *xs: torch.cat(xs, dim=1))
    if kind == "Mul":
        return _function_module(lambda a, b: a * b)              # torch.mul, broadcasting
    raise ValueError(f"torch_twin: no torch layer for {kind}")


def _function_module(fn):
    """An nn.Module computing fn(*inputs): a join or a slice, which torch writes as code."""
    from torch import nn

    class Function(nn.Module):
        def forward(self, *xs):
            return fn(*xs)
    return Function()


def _graph_module(names, modules, inputs):
    """An nn.Module running the named modules in order, each on the outputs it reads
    ("input" is the model's input); its output is the last one's. Its submodules are
    ``nodes``, in the model's order."""
    from torch import nn

    class GraphTwin(nn.Module):
        def __init__(self):
            super().__init__()
            self.nodes = nn.ModuleList(modules)

        def forward(self, x):
            values = {"input": x}
            for name, module, reads in zip(names, self.nodes, inputs):
                values[name] = module(*(values[r] for r in reads))
            return values[names[-1]]

        def __getitem__(self, index):
            """twin[i]: node i's module, as nn.Sequential's indexing gives (Captum's layer
            methods hook it)."""
            return self.nodes[index]
    return GraphTwin()


def torch_twin(model, dtype=None):
    """nn.Sequential (a chain) or a graph module computing what `model` computes, with its
    weights, in eval mode (float64 unless another torch dtype is given)."""
    import torch
    from torch import nn
    dtype = torch.float64 if dtype is None else dtype
    layers = []
    for cfg, layer in zip(model.config(), model.layers):
        t = _torch_layer(cfg)
        for pname, value in layer.parameters().items():
            getattr(t, pname).data = torch.from_numpy(np.array(value, dtype=np.float64))
        layers.append(t)
    if not model.is_chain():
        return _graph_module(model.names, layers, model.inputs).to(dtype).eval()
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
