"""The paper's other experiments and the checks that came later, computed on the engine and the
saliency methods: class models (§2), weakly supervised localisation (§3.1), fooling images,
metrics against ground truth, sanity checks and the evaluation over a test split.

These modules compute and return arrays and result dicts; they never draw or write files
(``minicnn.viz`` does that).
"""
