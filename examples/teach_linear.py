"""Teaching point 1 (Simonyan et al. 2013, §3, eq. 1): for a linear model the saliency IS the weight.

    S_c(I) = w_c . I + b_c   =>   dS_c/dI = w_c, for every image I.

We build that model from minicnn's own layers (Flatten then Linear), backpropagate a one-hot
on class c, and compare with row c of the weight matrix, reshaped to the image: they are
equal bit for bit, because backward is exactly "multiply by the transposed weight".

    python examples/teach_linear.py
"""
import numpy as np

import minicnn
from minicnn.saliency import gradient


def linear_model(channels=3, height=8, width=8, classes=5, seed=0, dtype=np.float64):
    """S(I) = W flatten(I) + b with random W (K, C*H*W) and b (K,)."""
    rng = np.random.default_rng(seed)
    fc = minicnn.Linear(channels * height * width, classes)
    fc.weight = rng.normal(size=(classes, channels * height * width)).astype(dtype)
    fc.bias = rng.normal(size=classes).astype(dtype)
    return minicnn.Sequential([minicnn.Flatten(), fc])


def check(seed=0):
    """Max |dS_c/dI - w_c| over random images and every class (0.0 expected)."""
    model = linear_model(seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(4, 3, 8, 8))                         # (N, C, H, W)
    worst = 0.0
    for c in range(5):
        w_c = model[1].weight[c].reshape(3, 8, 8)             # (C, H, W)
        g = gradient(model, x, target=c)                      # (N, C, H, W)
        worst = max(worst, float(np.abs(g - w_c).max()))
    return worst


def main():
    print("Linear model S_c = w_c . I + b_c on 3x8x8 images, 5 classes.")
    print(f"max |dS_c/dI - w_c| over 4 random images and all 5 classes: {check():.1e}")
    print("The gradient does not depend on the image at all: a linear model has one saliency "
          "map per class, its weight. A CNN is only linear near each image, which is why its "
          "saliency map changes from image to image (see teach_taylor.py).")


if __name__ == "__main__":
    main()
