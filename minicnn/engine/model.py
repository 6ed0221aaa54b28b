"""A CNN as a graph of named layers: forward runs them in order, backward in reverse.

This is where a saliency map is made (Simonyan, Vedaldi & Zisserman 2013, arXiv:1312.6034,
§3): ``scores = model(x)`` gives the class scores before the softmax, then
``model.backward(one_hot)`` carries d(score_c)/d(scores) = one-hot back through every layer to
the pixels, d(score_c)/d(x), shaped like x.

A model is a list of nodes ``(name, layer, inputs)`` in an order where each node's inputs come
before it (a topological order); ``"input"`` is the image. ``Sequential`` is the simple case,
a chain in which every layer reads the one before (VGG, AlexNet, the shipped model). A
``Graph`` may also branch and join: in a residual network a block's input feeds both its
convolutions and, through a skip connection, an ``Add`` after them (ResNet); in SqueezeNet one
value feeds two convolutions whose outputs a ``Concat`` stacks. Forward is the same loop
either way. Backward runs the nodes in reverse and hands each input its share of the
gradient; where a value fed several nodes, the gradients coming back from all of them are
ADDED (the multivariate chain rule: d S / d v = sum over the consumers u of v of
d S / d u * d u / d v). That sum, in ``backward`` below, is why gradients reach the early
layers of a residual network undiminished: the skip path adds the incoming gradient itself.

After a pass, what flowed through the network can be read for any node, by index or name:

- ``model.activation(key)``: the node's output in the last forward pass;
- ``model.gradient_at(key)``: the gradient of the backward's start (e.g. score_c) with respect
  to that output, from the last backward pass (under an LRP rule: the relevance there);
- ``model.ledger()``: after a backward pass under LRP rules, the relevance ledger: at every
  node, the relevance that reached its output and what it passed on to its inputs, and what
  the bias, the stabiliser and a BatchNorm took on the way.

The backward pass runs under a rule (``layers/rules.py``): the gradient, the two saliency
rules at the rectifiers, DeepLIFT's Rescale, or LRP rules chosen node by node (a single rule
for every layer with weights, a ``Composite``, or a mapping of node names and layer types to
rules). Each node's rule is checked against its layer before the pass starts. Relevance, like
the gradient, is ADDED where a value fed several nodes: each consumer hands back the share it
took from that value.
A key may also name a block that is not itself a node, such as ResNet's ``"layer4"`` or
``"layer4.1"``: it means the block's output, the last node whose name starts with it.

Names follow PyTorch's module paths and state_dict prefixes ("features.0", "layer1.0.conv1");
a module called twice in PyTorch's forward becomes two nodes, the second named with ".1"
("layer1.0.relu.1"). ``state_dict``/``load_state_dict`` use PyTorch's key names, and
``config``/``from_config`` describe the architecture as JSON-able data (each node's dict
lists its inputs), so a model can be saved as arrays + a list of dicts without pickle.
"""
from __future__ import annotations

import numpy as np

from minicnn._checks import check_array, check_finite
from minicnn.engine import kernels
from minicnn.engine.layers import (BACKWARD_RULES, Activation, Add, AdaptiveAvgPool2d,
                                   AvgPool2d, BatchNorm2d, Concat, Conv2d, Hardsigmoid, Hardswish,
                                   Hardtanh, Layer, Linear, MaxPool2d, Mul, ReLU, Sigmoid, SiLU,
                                   ZeroPad2d, layer_from_config)
from minicnn.engine.layers.rules import (Composite, Epsilon, RelevanceRule, Rescale, per_image,
                                         rule_name)

__all__ = ["Graph", "Sequential", "model_from_config", "as_model", "INPUT"]

INPUT = "input"  # the name under which a node reads the model's input
# Layers whose output is always a new array of their own, sharing no memory with their
# inputs. Not Flatten, Dropout or ChannelSlice, which pass their input on (as a view, or
# itself), nor ChannelShuffle (a view when groups is 1), nor a user's own layer: predict's
# ReLU overwrites a value only if it comes from one of these (a ReLU's own output is its
# input's array), and only if no view of it is still around (``_run``).
_WRITES_A_NEW_ARRAY = (Conv2d, Linear, BatchNorm2d, Add, Concat, Mul, MaxPool2d, AvgPool2d,
                       AdaptiveAvgPool2d, ZeroPad2d, ReLU, Hardtanh, Hardswish, Hardsigmoid,
                       SiLU, Sigmoid)


class Graph:
    """Named layers in topological order: ``Graph([(name, layer, (input names...)), ...])``.

    The last node's output is the model's output (the class scores). ``meta`` is a JSON-able
    dict that travels with the weights file: class names, input shape, preprocessing,
    provenance (see ``minicnn.io.weights``); {} if none.
    """

    meta: dict

    def __init__(self, nodes, meta: dict | None = None):
        names, layers, inputs = [], [], []
        seen = set()  # the names so far, for lookups in constant time (a file may list many)
        for i, item in enumerate(nodes):
            if not (isinstance(item, tuple) and len(item) == 3 and isinstance(item[0], str)
                    and isinstance(item[1], Layer)):
                raise TypeError(f"{type(self).__name__}: node {i} must be a (name, Layer, "
                                f"inputs) triple, got {item!r}")
            name, layer, reads = item
            reads = (reads,) if isinstance(reads, str) else tuple(reads)
            if name in seen:
                raise ValueError(f"{type(self).__name__}: node names must be unique, got "
                                 f"{name!r} twice")
            if name == INPUT:
                raise ValueError(f"{type(self).__name__}: {INPUT!r} names the model's input; "
                                 f"node {i} cannot be called so")
            for read in reads:
                if read != INPUT and read not in seen:
                    later = "itself" if read == name else (
                        "a node that comes later (a cycle, or nodes out of order)"
                        if any(n[0] == read for n in nodes[i + 1:] if isinstance(n, tuple))
                        else "no node")
                    raise ValueError(f"{type(self).__name__}: node {name!r} reads {read!r}, "
                                     f"which is {later}; each node reads {INPUT!r} or nodes "
                                     f"before it")
            if not reads:
                raise ValueError(f"{type(self).__name__}: node {name!r} reads nothing")
            names.append(name)
            seen.add(name)
            layers.append(layer)
            inputs.append(reads)
        if not names:
            raise ValueError(f"{type(self).__name__}: a model needs at least one node")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError(f"{type(self).__name__}: the same layer object appears twice; a "
                             "layer keeps the state of its last forward pass, so each node "
                             "needs its own")
        self.names, self.layers, self.inputs = names, layers, inputs
        self._index = {name: i for i, name in enumerate(names)}
        self._blocks = _block_outputs(names)
        for name, layer in zip(names, layers):
            layer.name = name
        self.meta = dict(meta or {})
        self._activations = None  # outputs of the last forward pass, one per node
        self._gradients = None  # gradients w.r.t. those outputs, from the last backward pass
        self._ledger = None  # the last backward's relevance ledger, under LRP rules

    # --- access ---------------------------------------------------------------------------------

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, key):
        """model[3], model[-1] or model["features.0"] -> the layer."""
        return self.layers[self.index(key)]

    def index(self, key) -> int:
        """Position of a node given by index (negative allowed) or by name; a block's name
        ("layer4") means its output node."""
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not -len(self) <= key < len(self):
                raise IndexError(f"{type(self).__name__}: layer index {key} out of range for "
                                 f"{len(self)} layers")
            return int(key) % len(self)
        if isinstance(key, str):
            if key in self._index:
                return self._index[key]
            if key in self._blocks:
                return self._index[self._blocks[key]]
            raise KeyError(f"{type(self).__name__}: no layer named {key!r}; names are "
                           f"{self.names}")
        raise TypeError(f"{type(self).__name__}: a layer is selected by int index or str name, "
                        f"got {type(key).__name__}")

    def find(self, layer_type) -> list[str]:
        """Names of the nodes whose layer is a ``layer_type``, in order; e.g.
        ``model.find(Conv2d)[-1]`` is the last convolution."""
        return [name for name, layer in zip(self.names, self.layers)
                if isinstance(layer, layer_type)]

    def consumers(self, key) -> list[str]:
        """Names of the nodes that read node ``key``'s output (or the input, "input")."""
        name = INPUT if key == INPUT else self.names[self.index(key)]
        return [n for n, reads in zip(self.names, self.inputs) if name in reads]

    def __repr__(self):
        lines = [f"  ({name}): {layer!r}" + ("" if self._chained(i) else
                                              f" <- {', '.join(self.inputs[i])}")
                 for i, (name, layer) in enumerate(zip(self.names, self.layers))]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"

    def _chained(self, i) -> bool:
        """Node i reads exactly the node before it (or the input, if it is the first)."""
        return self.inputs[i] == ((self.names[i - 1] if i else INPUT),)

    def is_chain(self) -> bool:
        """Every node reads exactly the node before it: a ``Sequential`` would do."""
        return all(self._chained(i) for i in range(len(self)))

    # --- forward and backward -------------------------------------------------------------------

    def forward(self, x):
        """x: (N, C, H, W) float32 or float64 -> scores (N, K) before the softmax.

        The computation runs in x's dtype. Every node's output is kept for ``activation`` and
        for ``backward``.
        """
        self._activations = self._run(x, "forward", keep=True)
        self._input, self._gradients, self._ledger = x, None, None
        return self._activations[-1]

    __call__ = forward

    def predict(self, x):
        """x: (N, C, H, W) -> scores (N, K): ``forward``'s scores (the same values, tested)
        when no backward pass will follow, as in deletion/insertion curves and occlusion.

        It does less work and holds less memory because nothing is kept: each value is
        dropped once every node that reads it has run, a ReLU overwrites its input when no
        other node reads that (one pass over memory instead of two, no new array), and
        max-pools find their maxima without the argmax that only backward needs. Afterwards
        ``activation`` and ``backward`` need a new ``forward``.
        """
        self._activations = self._gradients = self._ledger = None
        return self._run(x, "predict", keep=False)[-1]

    def _run(self, x, what, keep):
        """The nodes in order on x. keep=True: every node's ``forward``, and the list of
        their outputs; keep=False: every node's ``infer``, each value dropped once its last
        reader has run, and a list holding only the last output."""
        check_array(x, f"{type(self).__name__}.{what}: x")
        check_finite(x, f"{type(self).__name__}.{what}: x")  # once here, not in every layer
        readers = {INPUT: 0, **{name: 0 for name in self.names}}  # nodes yet to read each value
        for reads in self.inputs:
            for read in reads:
                readers[read] += 1
        values = {INPUT: x}
        viewed = set()  # values some node may have passed on as a view (Flatten, a slice)
        with kernels.active().pass_context():  # e.g. BLAS on one thread beside our own pool
            for name, layer, reads in zip(self.names, self.layers, self.inputs):
                inputs = [values[r] for r in reads]
                if keep:
                    values[name] = layer.forward(*inputs)
                    continue
                if isinstance(layer, ReLU):
                    out = layer.infer(inputs[0],
                                      inplace=self._may_overwrite(reads[0], readers, viewed))
                else:
                    out = layer.infer(*inputs)
                if type(layer) not in _WRITES_A_NEW_ARRAY:
                    viewed.update(reads)
                for read in reads:
                    readers[read] -= 1
                    if readers[read] == 0:
                        del values[read]
                values[name] = out
        return [values[name] for name in self.names] if keep else [values[self.names[-1]]]

    def _may_overwrite(self, key, readers, viewed) -> bool:
        """May the node reading value ``key`` write over it? Only if nothing else reads it,
        it is an array of the model's own (not the caller's input, and not a view of another
        value: Flatten's reshape, Dropout's identity, a ChannelSlice), and no view of it is
        around: a node that passes views on (Flatten, ChannelSlice) has not read it, since
        what it made may still be read later (``viewed``)."""
        return (key != INPUT and readers[key] == 1 and key not in viewed
                and type(self.layers[self._index[key]]) in _WRITES_A_NEW_ARRAY)

    def backward(self, grad_scores, rule="gradient", stop_at=None, *, relu_rule=None):
        """Run the nodes in reverse from d(start)/d(scores) and return d(start)/d(x).

        - grad_scores: shaped like the last forward output, (N, K); a one-hot row on class c
          gives the saliency gradient d(score_c)/d(x); for LRP, the one-hot times the score
          starts the relevance at the score itself
        - rule: "gradient" (the true gradient), "deconvnet" or "guided", passed to every
          activation (see ``minicnn.engine.layers.activations``: at a ReLU the methods'
          definitions; at other rectifiers their generalisation; gates pass the gradient);
          or DeepLIFT's ``Rescale()`` (after a forward pass on images stacked over their
          references); or LRP: a rule for every layer with weights, a ``Composite`` or a
          mapping (``rules_for``)
        - stop_at: a node name or index; if given, stop there and return the gradient with
          respect to that node's OUTPUT (e.g. the last conv block's, for Grad-CAM)
        - relu_rule: the old name of ``rule``, still accepted
        Returns: the gradient w.r.t. x, shaped like x (or like the stop_at node's output);
        under LRP rules the relevance of each input, and ``ledger()`` says where the rest
        went.
        """
        kind = type(self).__name__
        rule, keyword = _rule_argument(rule, relu_rule, f"{kind}.backward")
        if self._activations is None:
            raise ValueError(f"{kind}.backward: called before forward")
        if isinstance(rule, str) and rule not in BACKWARD_RULES:
            raise ValueError(f"{kind}.backward: unknown {keyword} {rule!r}; valid rules "
                             f"are {BACKWARD_RULES}")
        rules = self.rules_for(rule)
        relevance = any(isinstance(r, RelevanceRule) for r in rules)
        ledger = [] if relevance else None
        arrived = {}  # the ledger's relevance per image reaching each value, summed as it comes
        scores = self._activations[-1]
        check_array(grad_scores, f"{kind}.backward: grad_scores")
        if grad_scores.shape != scores.shape:
            raise ValueError(f"{kind}.backward: grad_scores must have the scores' shape "
                             f"{scores.shape}, got {grad_scores.shape}")
        stop = None if stop_at is None else self.index(stop_at)
        grads = {self.names[-1]: grad_scores}  # d(start)/d(value), by the value's name
        gradients = [None] * len(self)
        with kernels.active().pass_context():
            for i in reversed(range(len(self))):
                name, layer = self.names[i], self.layers[i]
                # every consumer of this node comes after it, so its gradient is complete now
                grad = grads.pop(name, None)
                if grad is None:  # the output does not depend on this node
                    grad = np.zeros_like(self._activations[i])
                gradients[i] = grad
                if i == stop:
                    self._gradients, self._ledger = gradients, ledger
                    return grad
                node_rule = rules[i]
                layer.__dict__.pop("_absorbed", None)
                if isinstance(node_rule, str) and not isinstance(layer, Activation):
                    grad_in = layer.backward(grad)  # the chain rule (a user's layer too)
                else:
                    grad_in = layer.backward(grad, node_rule)
                grad_in = grad_in if isinstance(grad_in, tuple) else (grad_in,)
                if ledger is not None:
                    ledger.append(_ledger_entry(name, layer, node_rule, grad, grad_in,
                                                self.inputs[i], arrived))
                for read, g in zip(self.inputs[i], grad_in):
                    # A value read by several nodes (a skip connection, a branch) gets the SUM
                    # of the gradients coming back from all of them: this line is where a
                    # residual network's identity path adds its gradient to the block's.
                    grads[read] = g if read not in grads else grads[read] + g
        self._gradients = gradients
        grad_x = grads.get(INPUT, np.zeros_like(self._input))
        if ledger is not None:
            ledger.append({"name": INPUT, "layer": "input", "rule": "",
                           "relevance_out": arrived.get(INPUT, per_image(grad_x))})
        self._ledger = ledger
        return grad_x

    def rules_for(self, rule) -> list:
        """The backward rule of every node, in order, each checked against its layer
        (``Layer.check_rule``: a rule that does not apply names the layer, the rule and what
        applies). ``rule`` is

        - "gradient", "guided", "deconvnet" or ``Rescale()``: the same for every node;
        - an LRP rule (``Epsilon()``, ``ZPlus()``, ...): that rule for every layer with weights,
          and each other layer its own default (Pass through activations and max-pools,
          Epsilon through additions and average pools, with the rule's epsilon or
          stabilizer);
        - a ``Composite``: its choice per node (``rules.Composite``);
        - a dict {node name, layer type or type name: LRP rule}: those, and each other layer
          its default; a layer with weights left out is a ValueError naming it.
        """
        names, layers = self.names, self.layers
        if isinstance(rule, (str, Rescale)):
            rules = [rule] * len(layers)
        elif isinstance(rule, RelevanceRule):
            stabilizer = rule.epsilon if isinstance(rule, Epsilon) else \
                getattr(rule, "stabilizer", 1e-6)
            rules = Composite(name=rule_name(rule), otherwise=rule,
                              stabilizer=stabilizer).rules_for(names, layers)
        elif isinstance(rule, Composite):
            rules = rule.rules_for(names, layers)
        elif isinstance(rule, dict):
            rules = Composite.from_mapping(rule, names, layers).rules_for(names, layers)
        else:
            raise TypeError(f"{type(self).__name__}.backward: rule must be one of "
                            f"{BACKWARD_RULES}, Rescale(), an LRP rule (Epsilon(), ZPlus(), "
                            f"...), a Composite or a dict of them, got {rule!r}")
        for layer, node_rule in zip(layers, rules):
            layer.check_rule(node_rule)
        return rules

    def ledger(self) -> list:
        """The relevance ledger of the last backward pass (under LRP rules), from the score's
        node back to the input: one dict per node, each value an array (N,) per image,

            {"name", "layer" (its type), "rule" (as the command line names it),
             "relevance_out": the relevance that reached the node's output,
             "relevance_in": what it passed on to its inputs (all of them),
             "bias", "stabiliser", "batchnorm": what the bias, the stabiliser and a
                BatchNorm's shift took (negative: created),
             "residual": out - in - bias - stabiliser - batchnorm, what no term accounts for
                (rounding; relevance a rule dropped, e.g. at an output exactly 0)}

        and a last {"name": "input", "relevance_out": the total relevance of the input}.
        Summed over the nodes, the absorbed terms and residuals are the score's relevance
        minus the input's."""
        if self._ledger is None:
            raise ValueError(f"{type(self).__name__}.ledger: the last backward pass carried no "
                             f"relevance; run backward with an LRP rule (Epsilon(), ZPlus(), a "
                             f"Composite) after a forward pass")
        return self._ledger

    # --- what flowed through the network --------------------------------------------------------

    def activation(self, key):
        """The output of node ``key`` (index or name) in the last forward pass."""
        if self._activations is None:
            raise ValueError(f"{type(self).__name__}.activation: no forward pass yet; call "
                             f"forward(x) first")
        return self._activations[self.index(key)]

    def gradient_at(self, key):
        """The gradient w.r.t. the output of node ``key`` (index or name) from the last
        backward pass. ``gradient_at(-1)`` is grad_scores itself."""
        if self._gradients is None:
            raise ValueError(f"{type(self).__name__}.gradient_at: no backward pass since the "
                             f"last forward; call backward(grad_scores) first")
        i = self.index(key)
        if self._gradients[i] is None:
            raise ValueError(f"{type(self).__name__}.gradient_at: the last backward stopped "
                             f"before layer {self.names[i]!r} (stop_at)")
        return self._gradients[i]

    # --- weights and dtype ----------------------------------------------------------------------

    def astype(self, dtype):
        """Cast every weight to float32 or float64; returns self."""
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def state_dict(self) -> dict:
        """{"<name>.weight": array, "<name>.bias": array, ...} with PyTorch's key names. The
        arrays are the model's own (not copies)."""
        return {f"{name}.{p}": value for name, layer in zip(self.names, self.layers)
                for p, value in layer.parameters().items()}

    def load_state_dict(self, state: dict, copy: bool = True):
        """Copy weights in, strictly: every key of ``state_dict()`` must be present with the
        same shape, and no other key. Values are cast to the model's current dtype.

        The model keeps read-only copies (``Layer.set_array``). copy=False takes the given
        arrays themselves when they are already C-contiguous in the right dtype and own their
        memory, and makes them read-only (for a caller that hands them over, like
        ``weights.load``)."""
        expected = self.state_dict()
        for key, value in expected.items():
            if key not in state:
                raise ValueError(f"load_state_dict: missing key {key!r} "
                                 f"(expected shape {value.shape})")
        for key, value in state.items():
            if key not in expected:
                raise ValueError(f"load_state_dict: unexpected key {key!r}; expected keys are "
                                 f"{sorted(expected)}")
            if not isinstance(value, np.ndarray):
                raise TypeError(f"load_state_dict: {key!r} must be a numpy.ndarray, "
                                f"got {type(value).__name__}")
            if value.dtype.kind != "f":
                raise TypeError(f"load_state_dict: {key!r} must hold floats, got {value.dtype}")
            if value.shape != expected[key].shape:
                raise ValueError(f"load_state_dict: {key!r} has shape {value.shape}, expected "
                                 f"{expected[key].shape}")
        for key, value in state.items():
            name, p = key.rsplit(".", 1)
            self[name].set_array(p, value, copy=copy, dtype=expected[key].dtype)
        return self

    # --- architecture as data -------------------------------------------------------------------

    def config(self) -> list:
        """[{"name": "layer1.0.add", "type": "Add", "inputs": ["layer1.0.conv2", "maxpool"]},
        ...] (JSON-able), one dict per node in order."""
        return [{"name": name, **layer.config(), "inputs": list(reads)}
                for name, layer, reads in zip(self.names, self.layers, self.inputs)]

    @classmethod
    def from_config(cls, config, init: bool = True, dtype=np.float32):
        """Inverse of ``config()`` (a node without "inputs" reads the node before it);
        weights in ``dtype`` are freshly initialised (load them afterwards), or left
        uninitialised with init=False when they are about to be loaded anyway."""
        if not isinstance(config, (list, tuple)):
            raise TypeError(f"{cls.__name__}.from_config: expected a list of layer dicts, "
                            f"got {type(config).__name__}")
        nodes = []
        for i, item in enumerate(config):
            if not isinstance(item, dict) or "name" not in item:
                raise ValueError(f"{cls.__name__}.from_config: item {i} must be a dict with "
                                 f"'name' and 'type' keys, got {item!r}")
            reads = item.get("inputs", [nodes[-1][0]] if nodes else [INPUT])
            if not (isinstance(reads, list) and all(isinstance(r, str) for r in reads)):
                raise ValueError(f"{cls.__name__}.from_config: node {item['name']!r} must list "
                                 f"its inputs as names, got {reads!r}")
            layer_config = {k: v for k, v in item.items() if k != "inputs"}
            nodes.append((str(item["name"]), layer_from_config(layer_config, init, dtype),
                          tuple(reads)))
        return cls(nodes)


class Sequential(Graph):
    """A chain: each layer reads the one before.

    ``Sequential([Conv2d(...), ReLU(), ...])`` names the layers "0", "1", ...;
    ``Sequential([("features.0", Conv2d(...)), ...])`` gives them your names.
    """

    def __init__(self, layers, meta: dict | None = None):
        pairs = []
        for i, item in enumerate(layers):
            if isinstance(item, Layer):
                pairs.append((str(i), item))
            elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                  and isinstance(item[1], Layer)):
                pairs.append(item)
            else:
                raise TypeError(f"Sequential: item {i} must be a Layer or a (name, Layer) pair, "
                                f"got {item!r}")
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"Sequential: layer names must be unique, got {names}")
        super().__init__([(name, layer, (names[i - 1] if i else INPUT,))
                          for i, (name, layer) in enumerate(pairs)], meta)

    def config(self) -> list:
        """[{"name": "features.0", "type": "Conv2d", "in_channels": 3, ...}, ...] (JSON-able);
        a chain needs no "inputs"."""
        return [{"name": name, **layer.config()} for name, layer in zip(self.names, self.layers)]

    @classmethod
    def from_config(cls, config, init: bool = True, dtype=np.float32) -> "Sequential":
        """Inverse of ``config()``; see ``Graph.from_config``."""
        graph = Graph.from_config(config, init, dtype)
        if not graph.is_chain():
            raise ValueError("Sequential.from_config: the config describes a graph, not a "
                             "chain; use Graph.from_config")
        return cls(list(zip(graph.names, graph.layers)))


def model_from_config(config, init: bool = True, dtype=np.float32) -> Graph:
    """A ``Sequential`` if the config is a chain, else a ``Graph``."""
    graph = Graph.from_config(config, init, dtype)
    return as_model(list(zip(graph.names, graph.layers, graph.inputs)))


def as_model(nodes, meta: dict | None = None) -> Graph:
    """(name, layer, inputs) triples -> a ``Sequential`` if every node reads the one before
    it (the first reads the input), else a ``Graph``."""
    graph = Graph(nodes, meta)
    if graph.is_chain():
        return Sequential(list(zip(graph.names, graph.layers)), graph.meta)
    return graph


def _ledger_entry(name, layer, rule, relevance, shares, reads, arrived) -> dict:
    """One node's line of the relevance ledger (see ``Graph.ledger``). ``arrived`` holds, per
    value, the total its consumers handed back so far, so that each array is summed once."""
    absorbed = layer.__dict__.pop("_absorbed", {})
    out = arrived.pop(name) if name in arrived else per_image(relevance)
    passed = 0
    for read, share in zip(reads, shares):
        total = out if share is relevance else per_image(share)
        arrived[read] = arrived[read] + total if read in arrived else total
        passed = passed + total
    entry = {"name": name, "layer": type(layer).__name__, "rule": rule_name(rule),
             "relevance_out": out, "relevance_in": passed}
    for term in ("bias", "stabiliser", "batchnorm"):
        entry[term] = np.asarray(absorbed.get(term, np.zeros(len(out))), np.float64)
    entry["residual"] = out - passed - entry["bias"] - entry["stabiliser"] - entry["batchnorm"]
    return entry


def _rule_argument(rule, relu_rule, where) -> tuple:
    """(the backward rule, the keyword it came by) from ``rule=`` or its old name
    ``relu_rule=``; TypeError if both are given."""
    if relu_rule is None:
        return rule, "rule"
    if rule != "gradient":
        raise TypeError(f"{where}: got both rule={rule!r} and relu_rule={relu_rule!r}; "
                        f"relu_rule is the old name of rule, give only rule")
    return relu_rule, "relu_rule"


def _block_outputs(names) -> dict:
    """{block: its output node} for every dotted prefix of a node name that is not a node
    itself: "layer4.1" -> "layer4.1.relu.1", the last node (in order) inside the block."""
    blocks, nodes = {}, set(names)
    for name in names:
        parts = name.split(".")
        for k in range(1, len(parts)):
            prefix = ".".join(parts[:k])
            if prefix not in nodes:
                blocks[prefix] = name
    return blocks
