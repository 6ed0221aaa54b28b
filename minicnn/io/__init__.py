"""Files in and out: image files -> model input, the generated dataset, weights files (.npz,
never pickle), ImageNet labels, torchvision layouts and checkpoint conversion, and the one
atomic writer every output goes through. Uses the engine only.
"""
