"""minicnn._parallel: a function mapped over forked copies of the process gives what it gives
in this process, in order; and the demo's work, explained files, is the same either way."""
import json
import os

import numpy as np
import pytest

import minicnn
from minicnn._parallel import MAX_JOBS, default_jobs, forked_map
from minicnn.explain import ExplainError, explain_file
from minicnn.io.images import ImageReadError
from minicnn.io.samples import SAMPLES_DIR

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this system")


@needs_fork
def test_forked_map_keeps_the_order_and_runs_closures_in_other_processes():
    big = np.arange(10)                               # inherited by the copies, not pickled
    here = os.getpid()
    got = forked_map(lambda k: (int(big[k]) ** 2, os.getpid() != here), range(7), jobs=2)
    assert [v for v, _ in got] == [k * k for k in range(7)]
    assert all(elsewhere for _, elsewhere in got)


def test_one_job_runs_in_this_process():
    here = os.getpid()
    assert forked_map(lambda k: os.getpid(), range(3), jobs=1) == [here] * 3
    assert forked_map(len, [], jobs=4) == []
    assert 1 <= default_jobs() <= MAX_JOBS


@needs_fork
def test_an_error_in_a_copy_is_raised_here():
    def fail_on_three(k):
        if k == 3:
            raise ValueError("item 3")
        return k
    with pytest.raises(ValueError, match="item 3"):
        forked_map(fail_on_three, range(5), jobs=2)


@needs_fork
def test_explained_files_in_forked_copies_are_those_of_one_process(tmp_path):
    """What ``minicnn demo`` does: each sample's figure, map and overlay written by a copy of
    the process are those this process writes, and so are the answers and the errors."""
    model = minicnn.load()
    index = json.loads((SAMPLES_DIR / "samples.json").read_text())["images"]
    names = list(index)[:5]
    folder = tmp_path / "samples"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes((SAMPLES_DIR / name).read_bytes())
    (folder / "gone.png").write_bytes(b"not an image")       # a bad sample in the middle
    chosen = [*names[:2], "gone.png", *names[2:]]

    def explained(out):
        def one(name):
            info = index[name if name in index else names[0]]
            try:
                return explain_file(model, folder / name, out_dir=tmp_path / out, dpi=40,
                                    box=info["box"], true_label=info["label"])
            except (ImageReadError, ExplainError) as e:
                return str(e)
        return one

    one = forked_map(explained("one"), chosen, jobs=1)
    two = forked_map(explained("two"), chosen, jobs=2)
    for a, b in zip(one, two, strict=True):
        if isinstance(a, str):
            assert a == b and "gone.png" in a
            continue
        assert (a.predicted_name, a.top, a.inside, a.correct) == \
            (b.predicted_name, b.top, b.inside, b.correct)
        for file_a, file_b in ((a.figure, b.figure), (a.map, b.map), (a.overlay, b.overlay)):
            with open(file_a, "rb") as fa, open(file_b, "rb") as fb:
                assert fa.read() == fb.read(), file_a
    assert sorted(os.listdir(tmp_path / "one")) == sorted(os.listdir(tmp_path / "two"))
    assert len(os.listdir(tmp_path / "two")) == 3 * len(names)
