"""minicnn.save / minicnn.load: round trip, and a named error for every kind of bad file."""
import json
import pickle
import zipfile

import numpy as np
import pytest

import minicnn
from minicnn.io.weights import WeightsFileError, load, save


def tiny_model():
    rng = np.random.default_rng(0)
    model = minicnn.Sequential([
        ("features.0", minicnn.Conv2d(3, 4, 3, padding=1)), ("features.1", minicnn.ReLU()),
        ("features.2", minicnn.MaxPool2d(2)), ("flatten", minicnn.Flatten()),
        ("classifier.0", minicnn.Linear(4 * 4 * 4, 3))])
    for layer in model.layers:
        for name, value in layer.parameters().items():
            setattr(layer, name, rng.normal(size=value.shape).astype(np.float32))
    return model


@pytest.fixture
def saved(tmp_path):
    model = tiny_model()
    path = save(model, tmp_path / "tiny.npz", meta={"class_names": ["a", "b", "c"]})
    return model, path


def _rewrite(path, out, change):
    """Copy an npz, letting change(dict of arrays) edit it; keeps __meta__ (and its sha256)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    np.savez(out, **arrays)
    return out


def test_round_trip_same_function_keys_and_meta(saved):
    model, path = saved
    loaded = load(path)
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))
    assert loaded.names == model.names
    assert loaded.meta["class_names"] == ["a", "b", "c"]
    assert len(loaded.meta["sha256"]) == 64
    with np.load(path, allow_pickle=False) as npz:   # PyTorch's key names, no pickle needed
        assert {"features.0.weight", "features.0.bias", "classifier.0.weight"} <= set(npz.files)


def test_save_writes_whole_file_or_nothing(saved, tmp_path):
    model, path = saved
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save(model, path, meta={"bad": object()})    # not JSON: fails before the rename
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.npz"]   # no temp file left


def test_missing_file(tmp_path):
    with pytest.raises(WeightsFileError, match=r"nowhere\.npz: no such weights file"):
        load(tmp_path / "nowhere.npz")


def test_missing_key_names_file_and_key(saved, tmp_path):
    _, path = saved
    bad = _rewrite(path, tmp_path / "missing.npz", lambda a: a.pop("features.0.bias"))
    with pytest.raises(WeightsFileError, match=r"missing\.npz.*missing key 'features\.0\.bias'"):
        load(bad)


def test_extra_key(saved, tmp_path):
    _, path = saved
    bad = _rewrite(path, tmp_path / "extra.npz", lambda a: a.update({"features.9.weight": np.ones(3)}))
    with pytest.raises(WeightsFileError, match=r"extra\.npz.*unexpected key 'features\.9\.weight'"):
        load(bad)


def test_misshaped_key(saved, tmp_path):
    _, path = saved

    def change(a):
        a["classifier.0.weight"] = np.zeros((3, 65), np.float32)
    bad = _rewrite(path, tmp_path / "shape.npz", change)
    with pytest.raises(WeightsFileError, match=r"shape\.npz.*'classifier\.0\.weight' has shape \(3, 65\), expected \(3, 64\)"):
        load(bad)


def test_changed_values_fail_the_digest(saved, tmp_path):
    _, path = saved

    def change(a):
        a["features.0.weight"] = a["features.0.weight"] + 1e-3
    bad = _rewrite(path, tmp_path / "edited.npz", change)
    with pytest.raises(WeightsFileError, match=r"edited\.npz: the arrays do not match the sha256"):
        load(bad)


def test_truncated_file(saved, tmp_path):
    _, path = saved
    bad = tmp_path / "cut.npz"
    bad.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(WeightsFileError, match=r"cut\.npz: not a readable \.npz file"):
        load(bad)


def test_flipped_byte_inside_an_array(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:                 # find the weight's bytes in the archive
        info = z.getinfo("classifier.0.weight.npy")
    data[info.header_offset + 200] ^= 0xFF
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError, match=r"flipped\.npz.*classifier\.0\.weight"):
        load(bad)


def test_plain_pickle_is_refused(tmp_path):
    bad = tmp_path / "evil.npz"
    bad.write_bytes(pickle.dumps({"features.0.weight": np.ones(3)}))
    with pytest.raises(WeightsFileError, match=r"evil\.npz: refusing to load"):
        load(bad)


def test_object_array_needing_pickle_is_refused(saved, tmp_path):
    _, path = saved

    def change(a):
        a["features.0.weight"] = np.array([{"x": 1}], dtype=object)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    np.savez(tmp_path / "obj.npz", **arrays)         # np.savez pickles object arrays
    with pytest.raises(WeightsFileError, match=r"obj\.npz: array 'features\.0\.weight' cannot be read without pickle"):
        load(tmp_path / "obj.npz")


def test_not_a_minicnn_file(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.ones(3))
    with pytest.raises(WeightsFileError, match=r"plain\.npz: no __architecture__ entry"):
        load(tmp_path / "plain.npz")


def test_bad_architecture(saved, tmp_path):
    _, path = saved

    def change(a):
        arch = json.loads(str(a["__architecture__"]))
        arch[0]["type"] = "Conv3d"
        a["__architecture__"] = np.array(json.dumps(arch))
    bad = _rewrite(path, tmp_path / "arch.npz", change)
    with pytest.raises(WeightsFileError, match=r"arch\.npz: bad architecture.*Conv3d"):
        load(bad)


def test_wrong_suffix(tmp_path):
    with pytest.raises(WeightsFileError, match=r"must end in \.npz"):
        save(tiny_model(), tmp_path / "model.pt")


def test_loading_leaves_no_random_init_behind(tmp_path):
    """weights.load builds the layers uninitialised and keeps the file's arrays: every weight
    equals the saved one, and none of them is a second copy."""
    import minicnn
    from minicnn.io import weights
    model = minicnn.Sequential([("c", minicnn.Conv2d(2, 3, 3, rng=1)), ("f", minicnn.Flatten()),
                                ("l", minicnn.Linear(3 * 2 * 2, 4, rng=2))])
    path = tmp_path / "m.npz"
    weights.save(model, path)
    loaded = weights.load(path)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value)
    empty = minicnn.Sequential.from_config(model.config(), init=False)
    assert empty.state_dict().keys() == model.state_dict().keys()
    state = {k: v.copy() for k, v in model.state_dict().items()}
    kept = empty.load_state_dict(state, copy=False)
    assert all(kept.state_dict()[k] is state[k] for k in state)
    copied = minicnn.Sequential.from_config(model.config()).load_state_dict(state)
    assert not any(copied.state_dict()[k] is state[k] for k in state)


def test_written_files_get_ordinary_permissions(tmp_path):
    """Outputs are written under a temporary name (mkstemp: mode 0600) and renamed; the result
    must be as readable as a file opened normally (0666 minus the umask)."""
    import os

    import minicnn
    from minicnn.io import weights
    from minicnn.io.atomic import atomic_write
    mask = os.umask(0)  # read the process's umask
    os.umask(mask)
    text = atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("x"))
    model = minicnn.Sequential([("l", minicnn.Linear(2, 2, rng=0))])
    npz = weights.save(model, tmp_path / "m.npz")
    for path in (text, npz):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, oct(path.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "m.npz"]  # no leftovers
