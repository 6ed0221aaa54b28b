"""minicnn.save / minicnn.load: round trip, and a named error for every kind of bad file."""
import io
import json
import os
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
    with pytest.raises(WeightsFileError, match=r"evil\.npz: holds pickled Python data; refusing to load it"):
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
    copied = minicnn.Sequential.from_config(model.config()).load_state_dict(state)
    assert not any(np.shares_memory(copied.state_dict()[k], state[k]) for k in state)
    kept = empty.load_state_dict(state, copy=False)  # handed over: taken as they are, frozen
    assert all(np.shares_memory(kept.state_dict()[k], state[k]) for k in state)
    assert not any(state[k].flags.writeable for k in state)


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


# ----------------------------------------------------------------------------- hostile files

def _with_meta(path, out, **changes):
    """Copy an npz with entries of __meta__ replaced (the sha256 stays valid: arrays unchanged)."""
    def change(a):
        meta = json.loads(str(a["__meta__"]))
        meta.update(changes)
        a["__meta__"] = np.array(json.dumps(meta))
    return _rewrite(path, out, change)


def _with_arch(path, out, edit):
    def change(a):
        arch = json.loads(str(a["__architecture__"]))
        edit(arch)
        a["__architecture__"] = np.array(json.dumps(arch))
    return _rewrite(path, out, change)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_naming_the_array(saved, tmp_path, value):
    _, path = saved

    def change(a):
        a["classifier.0.weight"] = a["classifier.0.weight"].copy()
        a["classifier.0.weight"][2, 5] = value
    bad = _rewrite(path, tmp_path / "nan.npz", change)
    with pytest.raises(WeightsFileError, match=r"nan\.npz: array 'classifier\.0\.weight' contains "
                                               r"NaN or inf \(first at index \(2, 5\)"):
        load(bad)


def test_save_refuses_non_finite_weights(tmp_path):
    model = tiny_model()
    bias = model["features.0"].bias.copy()
    bias[1] = np.nan
    model["features.0"].bias = bias
    with pytest.raises(ValueError, match=r"save: weight 'features\.0\.bias' contains NaN or inf"):
        save(model, tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


def _set_declared_size(data: bytearray, name: bytes, size: int) -> bytearray:
    """Patch an entry's uncompressed size in its local header and in the central directory."""
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            name_at = start + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                data[start + size_at:start + size_at + 4] = size.to_bytes(4, "little")
            start += 4
    return data


def test_absurd_declared_entry_size_is_refused_before_inflating(saved, tmp_path):
    _, path = saved
    data = _set_declared_size(bytearray(path.read_bytes()), b"classifier.0.weight.npy",
                              0xFFFF_FFF0)
    (tmp_path / "huge.npz").write_bytes(bytes(data))
    with zipfile.ZipFile(tmp_path / "huge.npz") as z:                 # the lie is in place
        assert z.getinfo("classifier.0.weight.npy").file_size == 0xFFFF_FFF0
    with pytest.raises(WeightsFileError, match=r"huge\.npz: array 'classifier\.0\.weight' declares "
                                               r"4,294,967,280 bytes, more than the limit of "
                                               r"2,147,483,648; refusing to inflate it"):
        load(tmp_path / "huge.npz")


def test_array_header_that_lies_about_its_shape_is_refused(saved, tmp_path):
    """A .npy header claiming a 10^6 x 10^6 float32 array over 12 bytes of data: numpy would
    first allocate 4 TB for it."""
    _, path = saved
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**6, 10**6)})
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / "lie.npz", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "classifier.0.weight.npy":
                data = header.getvalue() + bytes(12)
            dst.writestr(info.filename, data)
    with pytest.raises(WeightsFileError, match=r"lie\.npz: array 'classifier\.0\.weight' declares "
                                               r"shape \(1000000, 1000000\) of float32 "
                                               r"\(4,000,000,000,000 bytes\) but its entry holds "
                                               r"12 bytes"):
        load(tmp_path / "lie.npz")


def test_giant_declared_layer_fails_on_its_key_not_on_memory(saved, tmp_path):
    """The architecture says Linear(10^6 -> 10^6) (4 TB of weights); the file holds 3 x 64."""
    _, path = saved

    def giant(arch):
        arch[-1].update(in_features=10**6, out_features=10**6)
    bad = _with_arch(path, tmp_path / "giant.npz", giant)
    with pytest.raises(WeightsFileError, match=r"giant\.npz: .*'classifier\.0\.weight' has shape "
                                               r"\(3, 64\), expected \(1000000, 1000000\)"):
        load(bad)


def test_giant_padding_is_refused_naming_the_layer(saved, tmp_path):
    _, path = saved
    bad = _with_arch(path, tmp_path / "pad.npz", lambda arch: arch[0].update(padding=[10**6, 1]))
    with pytest.raises(WeightsFileError, match=r"pad\.npz: bad architecture: layer 'features\.0' "
                                               r"has padding \[1000000, 1\], more than the limit "
                                               r"of 1024"):
        load(bad)


def test_empty_architecture_is_refused(tmp_path):
    np.savez(tmp_path / "empty.npz", __architecture__=np.array("[]"),
             __meta__=np.array("{}"))
    with pytest.raises(WeightsFileError, match=r"empty\.npz: bad architecture: __architecture__ "
                                               r"lists no layers"):
        load(tmp_path / "empty.npz")


@pytest.mark.parametrize("changes, message", [
    ({"preprocess": {"resize": 10**9, "crop": 64}},
     r"bad __meta__: preprocess resize must be an int in 1\.\.2048, got 1000000000"),
    ({"preprocess": {"resize": 8, "crop": 9}}, r"preprocess crop must be an int in 1\.\.8, got 9"),
    ({"preprocess": {"resize": 8, "crop": 8, "std": [0.2, 0, 0.2]}},
     r"preprocess std must be 3 finite numbers > 0"),
    ({"class_names": ["a", "b"], "input_shape": [3, 8, 8]},
     r"bad __meta__: 2 class_names for the model's 3 outputs"),
    ({"class_names": "abc"}, r"class_names must be a list of strings"),
    ({"input_shape": [3, 10**6, 8]}, r"input_shape must be \[3, H, W\] with H and W in 1\.\.2048"),
    ({"input_shape": [3, 8, 8], "preprocess": {"resize": 16, "crop": 16}},
     r"input_shape \[3, 8, 8\] does not match the preprocess crop 16"),
])
def test_bad_metadata_is_refused_at_load(saved, tmp_path, changes, message):
    _, path = saved
    with pytest.raises(WeightsFileError, match=r"meta\.npz: .*" + message):
        load(_with_meta(path, tmp_path / "meta.npz", **changes))


def test_architecture_that_does_not_run_on_its_declared_input(saved, tmp_path):
    """A kernel larger than the image it gets, and an output that is not class scores."""
    _, path = saved
    small = _with_meta(path, tmp_path / "small.npz", input_shape=[3, 1, 1])
    with pytest.raises(WeightsFileError, match=r"small\.npz: the architecture does not run on a "
                                               r"\(3, 1, 1\) image: MaxPool2d 'features\.2': kernel "
                                               r"\(2, 2\) is larger than the padded input"):
        load(small)
    model = minicnn.Sequential([("c", minicnn.Conv2d(3, 2, 3, rng=0))])        # (1, 2, 6, 6) out
    save(model, tmp_path / "conv.npz", meta={"input_shape": [3, 8, 8]})
    with pytest.raises(WeightsFileError, match=r"conv\.npz: the architecture gives an output of "
                                               r"shape \(1, 2, 6, 6\) for one image, not class "
                                               r"scores \(1, K\)"):
        load(tmp_path / "conv.npz")
    assert load(tmp_path / "conv.npz", verify=False).names == ["c"]           # the API can opt out


def test_messages_say_what_a_wrong_file_is(tmp_path):
    (tmp_path / "notes.npz").write_text("hello, not weights")
    with pytest.raises(WeightsFileError, match=r"notes\.npz: not a \.npz file .* this starts with "
                                               r"b'hello,'"):
        load(tmp_path / "notes.npz")
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(WeightsFileError, match=r"folder\.npz: is a folder, not a weights file"):
        load(tmp_path / "folder.npz")


def test_unreadable_weights_file_is_a_permission_error(saved):
    _, path = saved
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: permissions do not stop reads")
        with pytest.raises(WeightsFileError, match=r"tiny\.npz: permission denied"):
            load(path)
    finally:
        path.chmod(0o644)


# ----------------------------------------------------------------------------- JSON of the wrong type

def _with_json(path, out, key, text):
    """Copy an npz with the JSON entry `key` replaced by `text` as it is."""
    def change(a):
        a[key] = np.array(text)
    return _rewrite(path, out, change)


@pytest.mark.parametrize("key, text, message", [
    ("__meta__", '"just a string"', r"bad __meta__: expected a JSON object \(class names, input "
                                     r"shape, \.\.\.\), got a string"),
    ("__meta__", "null", r"bad __meta__: expected a JSON object .*, got null"),
    ("__meta__", "3", r"bad __meta__: expected a JSON object .*, got a number"),
    ("__meta__", '["a", "b"]', r"bad __meta__: expected a JSON object .*, got a list"),
    ("__architecture__", '"Conv2d"', r"bad architecture: __architecture__ must be a list of layer "
                                     r"dicts, got a string"),
    ("__architecture__", "null", r"bad architecture: __architecture__ must be a list of layer "
                                 r"dicts, got null"),
    ("__architecture__", '{"name": "c"}', r"bad architecture: __architecture__ must be a list of "
                                          r"layer dicts, got an object"),
    ("__architecture__", "[true]", r"bad architecture: layer 0 must be a JSON object, got true"),
    ("__meta__", "[" * 100_000 + "]" * 100_000, r"__meta__ cannot be read as JSON \(maximum "
                                                r"recursion depth exceeded"),
    ("__meta__", '{"seed": ' + "9" * 5000 + "}", r"__meta__ cannot be read as JSON \(Exceeds "
                                                 r"the limit \(4300 digits\)"),
])
def test_json_entry_of_the_wrong_type_is_named(saved, tmp_path, key, text, message):
    """Each was a TypeError (or a RecursionError, a ValueError) from deep inside load."""
    _, path = saved
    with pytest.raises(WeightsFileError, match=r"json\.npz: " + message):
        load(_with_json(path, tmp_path / "json.npz", key, text))


@pytest.mark.parametrize("layer, key, value, message", [
    (0, "in_channels", "3", r"layer 'features\.0' has in_channels \"3\", expected an int in "
                            r"1\.\.2,147,483,648"),
    (0, "out_channels", 2.5, r"layer 'features\.0' has out_channels 2\.5, expected an int"),
    (0, "in_channels", float("inf"), r"layer 'features\.0' has in_channels Infinity, expected an "
                                     r"int"),                        # was int(inf): OverflowError
    (-1, "in_features", 10**30, r"layer 'classifier\.0' has in_features "
                                r"1000000000000000000000000000000, expected an int in 1\.\."),
    (-1, "out_features", -1, r"layer 'classifier\.0' has out_features -1, expected an int in "
                             r"1\.\."),
    (0, "bias", "yes", r"layer 'features\.0' has bias \"yes\", expected true or false"),
    (0, "kernel_size", [3], r"layer 'features\.0' has kernel_size \[3\], expected an int >= 1, "
                            r"a pair of them, or four"),
    (2, "stride", None, r"layer 'features\.2' has stride null, expected an int >= 1, a pair"),
    (0, "padding", [-1, 1], r"layer 'features\.0' has padding \[-1, 1\], expected an int >= 0, "
                            r"a pair of them, or four"),
    (0, "inputs", "input", r"layer 'features\.0' has inputs \"input\", expected a list of node "
                           r"names"),
    (0, "rng", 5, r"layer 'features\.0' has rng 5, expected nothing: rng is the loader's to "
                  r"choose"),
    (0, "name", 5, r"layer 0 needs a string 'name', got a number"),
    (0, "type", ["Conv2d"], r"layer 0 needs a string 'type', got a list"),
])
def test_layer_argument_of_the_wrong_json_type_names_layer_and_key(saved, tmp_path, layer, key,
                                                                    value, message):
    _, path = saved
    bad = _with_arch(path, tmp_path / "arg.npz", lambda arch: arch[layer].update({key: value}))
    with pytest.raises(WeightsFileError, match=r"arg\.npz: bad architecture: " + message):
        load(bad)


@pytest.mark.parametrize("changes, message", [
    ({"preprocess": ["resize", 64]}, r"preprocess must be a JSON object, got a list"),
    ({"class_names": None}, r"class_names must be a list of strings, got null"),
    ({"class_names": ["a", 2, "c"]}, r"class_names must be a list of strings, got a list "
                                     r"holding other things"),
    ({"input_shape": {"C": 3}}, r"input_shape must be \[3, H, W\] .*, got \{\"C\": 3\}"),
    ({"input_shape": None}, r"input_shape must be \[3, H, W\] .*, got null"),
    ({"sha256": 12}, r"sha256 must be 64 hexadecimal digits, got 12"),
    ({"dataset": "cluttered"}, r"dataset must be a JSON object, got a string"),
    ({"dataset": {"seed": "0"}}, r"dataset seed must be an int >= 0, got \"0\""),
    ({"dataset": {"generator": ["x"]}}, r"dataset generator must be a string, got a list"),
    ({"cam_layer": 3}, r"cam_layer must be the name of a node, got a number"),
    ({"cam_layer": "layer4"}, r"cam_layer \"layer4\" names no node of the model"),
])
def test_metadata_of_the_wrong_json_type_is_named(saved, tmp_path, changes, message):
    """Entries that other modules read (evaluate's int(meta["dataset"]["seed"]), Grad-CAM's
    cam_layer) are checked here, where the file is named, not where they are used."""
    _, path = saved
    with pytest.raises(WeightsFileError, match=r"meta\.npz: bad __meta__: " + message):
        load(_with_meta(path, tmp_path / "meta.npz", **changes))


def test_metadata_entries_of_the_right_type_load(saved, tmp_path):
    _, path = saved
    good = _with_meta(path, tmp_path / "ok.npz", dataset={"seed": 3, "generator": "g"},
                      cam_layer="features.1", input_shape=[3, 8, 8])
    assert load(good).meta["dataset"]["seed"] == 3


def test_too_many_layers_is_refused_before_building_them(saved, tmp_path):
    """Graph's node checks take time quadratic in the number of nodes: 20,000 ReLUs, a file
    of a few kB, took 36 s to build."""
    from minicnn.io.weights import MAX_LAYERS
    _, path = saved
    bad = _with_arch(path, tmp_path / "long.npz", lambda arch: arch.extend(
        {"name": f"r{i}", "type": "ReLU"} for i in range(MAX_LAYERS)))
    with pytest.raises(WeightsFileError, match=r"long\.npz: bad architecture: __architecture__ "
                                               r"lists 4,101 layers, more than the limit of 4,096"):
        load(bad)


def test_messages_quote_at_most_a_line_of_a_crafted_value(saved, tmp_path):
    _, path = saved
    bad = _with_arch(path, tmp_path / "long.npz",
                     lambda arch: arch[0].update(name="n" * 10**6, bias="b" * 10**6))
    with pytest.raises(WeightsFileError) as error:
        load(bad)
    message = str(error.value).replace(str(tmp_path), "")
    assert len(message) < 200 and message.count(" ...") == 2, message


# ----------------------------------------------------------------------------- archives

def _recompressed(path, out, method):
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", method) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    return out


def _patch_headers(path, out, local_at, central_at, value: bytes):
    """Overwrite one 2-byte field in every local and central header of a zip archive."""
    data = bytearray(path.read_bytes())
    for signature, at in ((b"PK\x03\x04", local_at), (b"PK\x01\x02", central_at)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            data[start + at:start + at + 2] = value
            start += 4
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_any_compression_zipfile_reads_loads(saved, tmp_path, method):
    model, path = saved
    loaded = load(_recompressed(path, tmp_path / "packed.npz", method))
    np.testing.assert_array_equal(loaded["classifier.0"].weight, model["classifier.0"].weight)


def test_encrypted_entry_and_unknown_compression_are_named(saved, tmp_path):
    """zipfile raises RuntimeError and NotImplementedError for these."""
    _, path = saved
    deflated = _recompressed(path, tmp_path / "d.npz", zipfile.ZIP_DEFLATED)
    locked = _patch_headers(deflated, tmp_path / "locked.npz", 6, 8, b"\x01\x00")  # flag bit 0
    with pytest.raises(WeightsFileError, match=r"locked\.npz: array '__architecture__' is "
                                               r"encrypted \(a minicnn weights file never is\)"):
        load(locked)
    odd = _patch_headers(deflated, tmp_path / "odd.npz", 8, 10, b"\x63\x00")      # method 99
    with pytest.raises(WeightsFileError, match=r"odd\.npz: array '__architecture__' uses a "
                                               r"compression method zipfile cannot read"):
        load(odd)


def test_two_entries_of_one_name_are_refused(saved, tmp_path):
    _, path = saved
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / "twice.npz", "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        with pytest.warns(UserWarning, match="Duplicate name"):
            dst.writestr("classifier.0.weight.npy", src.read("classifier.0.weight.npy"))
    with pytest.raises(WeightsFileError, match=r"twice\.npz: holds two entries named "
                                               r"'classifier\.0\.weight'"):
        load(tmp_path / "twice.npz")


def test_integer_array_is_refused_from_its_header(saved, tmp_path):
    _, path = saved

    def change(a):
        a["features.0.bias"] = np.arange(4, dtype=np.int32)
    bad = _rewrite(path, tmp_path / "int.npz", change)
    with pytest.raises(WeightsFileError, match=r"int\.npz: array 'features\.0\.bias' holds int32, "
                                               r"expected floats"):
        load(bad)


# ----------------------------------------------------------------------------- memory

_PEAK_RSS = """
import resource, sys
from minicnn.io.weights import WeightsFileError, load
try:
    load(sys.argv[1] if len(sys.argv) > 1 else None)
    print("loaded")
except WeightsFileError as e:
    print(e)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)   # KiB on Linux
"""


def _load_in_a_new_process(*path):
    """What `load` says in a fresh process, and the process's peak RSS in MiB."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS, *map(str, path)],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=root))
    assert done.returncode == 0, done.stderr
    said, peak = done.stdout.splitlines()
    return said, int(peak) / (1024 if sys.platform != "darwin" else 1024**2)


def _with_zeros(path, out, key, n):
    """A copy of the weights file `path` whose entry `key` is a float32 array of `n` zeros,
    deflated as it is written (1 GiB of zeros takes ~1 MB): the file stays small and this
    process never holds more than one 16 MiB chunk of it."""
    chunk = bytes(16 << 20)
    with zipfile.ZipFile(path) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for info in src.infolist():
            if info.filename != key + ".npy":
                dst.writestr(info, src.read(info))
        with dst.open(key + ".npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (n,)})
            for _ in range(n * 4 // len(chunk)):
                f.write(chunk)
    return out


def test_a_huge_unknown_or_misshaped_entry_is_refused_before_it_is_inflated(tmp_path):
    """The shipped model plus 1 GiB of compressed zeros, a file of a few MB, under a key the
    architecture does not have, or under one of its keys with the wrong shape: both are
    refused from the archive's directory and the .npy header, so loading them peaks no
    higher than loading the shipped model itself (it was 1.3 GB, +1.15 GB, when the unknown
    entry was inflated before its key was checked). A memory bound, not a timing."""
    from minicnn.io.weights import default_weights_path
    shipped = default_weights_path()
    n = 1 << 28                                                   # 2**28 float32: 1 GiB
    unknown = _with_zeros(shipped, tmp_path / "unknown.npz", "classifier.9.weight", n)
    wrong = _with_zeros(shipped, tmp_path / "wrong.npz", "classifier.1.weight", n)
    assert unknown.stat().st_size < 16 << 20 and wrong.stat().st_size < 16 << 20
    said, baseline = _load_in_a_new_process()
    assert said == "loaded"
    for path, message in [
            (unknown, "unexpected key 'classifier.9.weight': the architecture has no such "
                      "weight; refusing to inflate it"),
            (wrong, "array 'classifier.1.weight' has shape (268435456,), expected (128, 3072)")]:
        said, peak = _load_in_a_new_process(path)
        assert said.startswith(f"{path}: ") and message in said, said
        assert peak - baseline < 300, (path.name, peak, baseline)
