"""Teaching point 3 (Simonyan et al. 2013, §3; the post's "score before the softmax").

The paper differentiates the class *score* S_c, not the probability p_c = softmax(S)_c:

    dp_c/dI = p_c (dS_c/dI - sum_k p_k dS_k/dI).

The probability's gradient mixes in every other class's gradient: p_c can rise because the
*other* scores fall. This script shows it on the shipped model: it finds a small step that
LOWERS the score S_c and yet RAISES the probability p_c. Saliency from p_c would therefore
highlight pixels that are evidence *against other classes*, not evidence for c.

    python examples/teach_softmax_vs_score.py
"""
import json
from pathlib import Path

import numpy as np

import minicnn
from minicnn.saliency import gradient, probability_gradient, softmax


def score_down_probability_up(model, x0, c, step=1e-3):
    """A step d with dS_c/dI . d < 0 < dp_c/dI . d (score down, probability up).

    Returns (cosine(g_S, g_p), dS_c, dp_c) for the step d, computed with real forward passes.
    """
    model.astype(np.float64)
    x0 = x0.astype(np.float64)
    g_s = gradient(model, x0, c)
    g_p = probability_gradient(model, x0, c)
    cos = float((g_s * g_p).sum() / (np.linalg.norm(g_s) * np.linalg.norm(g_p)))
    # g_p = (part along g_s) + g_perp. Step along g_perp, minus beta along g_s: the score
    # falls (g_s . d = -beta |g_s|) while p rises (g_p . d = |g_perp|^2 - beta g_p . e_s > 0).
    e_s = g_s / np.linalg.norm(g_s)
    along = float((g_p * e_s).sum())
    g_perp = g_p - along * e_s
    perp2 = float((g_perp * g_perp).sum())
    beta = 0.5 * perp2 / along if along > 0 else 0.5 * np.sqrt(perp2)
    d = g_perp - beta * e_s
    d *= step / np.linalg.norm(d)
    s0, s1 = model.forward(x0), model.forward(x0 + d)
    p0, p1 = softmax(s0)[0, c], softmax(s1)[0, c]
    return cos, float(s1[0, c] - s0[0, c]), float(p1 - p0)


def main():
    root = Path(__file__).resolve().parent
    samples = json.loads((root / "images" / "samples.json").read_text())["images"]
    model = minicnn.load()
    from minicnn.io.images import Preprocess, read_image, to_input
    prep = Preprocess.from_meta(model.meta)
    # an image where the model is not certain, so p_c has room to move
    best = None
    for name, info in samples.items():
        x = to_input(read_image(root / "images" / name, prep), prep)
        p = softmax(model.forward(x).astype(np.float64))[0, info["label"]]
        if best is None or abs(p - 0.5) < abs(best[2] - 0.5):
            best = (name, x, p, info)
    name, x0, p, info = best
    c = info["label"]
    cos, ds, dp = score_down_probability_up(model, x0, c)
    print(f"{name}: class {info['class']}, p_c = {p:.3f}")
    print(f"cosine(dS_c/dI, dp_c/dI) = {cos:.3f}  (1 would mean the same map)")
    print("a step of norm 1e-3 along (dp/dI minus its dS/dI part, minus a little dS/dI):")
    print(f"  change in score S_c:       {ds:+.3e}   (down)")
    print(f"  change in probability p_c: {dp:+.3e}   (up)")


if __name__ == "__main__":
    main()
