"""minicnn's thread pool, its hand-off by watched counters, the BLAS thread limit and the
malloc settings (kernels/fast/threads.py, spin.py, allocator.py). How each setting is read
and checked: tests/engine/test_settings.py."""
import os
import subprocess
import sys

import numpy as np
import pytest

from minicnn.engine.kernels.fast import allocator, spin, threads


def test_split_covers_the_range_in_near_equal_pieces():
    for n in range(0, 30):
        for parts in range(1, 6):
            pieces = threads.split(n, parts)
            assert [i for a, b in pieces for i in range(a, b)] == list(range(n))
            lengths = [b - a for a, b in pieces]
            assert all(length > 0 for length in lengths) or n == 0
            assert max(lengths, default=0) - min(lengths, default=0) <= 1
            assert len(pieces) == max(1, min(parts, n))


def test_run_chunks_runs_every_chunk_once_and_raises(engine_setting):
    engine_setting("num_threads", 3)
    seen = np.zeros(10, int)

    def work(chunk):
        seen[chunk[0]:chunk[1]] += 1
    threads.run_chunks(work, threads.split(10, 3))
    np.testing.assert_array_equal(seen, 1)

    def fail(chunk):
        if chunk[0] > 0:
            raise RuntimeError(f"chunk {chunk} failed")
    with pytest.raises(RuntimeError, match="failed"):
        threads.run_chunks(fail, threads.split(10, 3))


def test_blas_limit_is_reentrant_and_restored():
    if not threads.parallel_ok():
        pytest.skip("no controllable BLAS or a single thread")
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    before = blas_threads()
    with threads.blas_single_threaded():
        assert set(blas_threads()) == {1}
        with threads.blas_single_threaded():
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}  # the outer block still holds the limit
    assert blas_threads() == before


def test_blas_loaded_later_is_limited_too():
    """A library imported after the first limit may bring its own BLAS (SciPy does): the
    limit must reach it as well."""
    code = ("import numpy; from minicnn.engine import settings; settings.set_num_threads(2)\n"
            "from minicnn.engine.kernels.fast import threads\n"
            "with threads.blas_single_threaded(): pass\n"
            "import scipy.linalg\n"
            "from threadpoolctl import threadpool_info\n"
            "with threads.blas_single_threaded():\n"
            "    print(sorted({lib['num_threads'] for lib in threadpool_info()"
            " if lib['user_api'] == 'blas'}))")
    pytest.importorskip("scipy")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS="2"), check=True)
    assert run.stdout.strip() == "[1]"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_malloc_is_tuned_on_request_only_and_can_be_switched_off():
    """``import minicnn`` and a whole pass leave malloc alone (a notebook's process is not
    ours to change); ``allocator.tune()``, which the command line calls, changes it unless
    MINICNN_TUNE_MALLOC=0."""
    import platform
    code = ("import numpy as np, minicnn\n"
            "from minicnn.engine.kernels.fast import allocator\n"
            "m = minicnn.load(); m.backward(np.eye(10, dtype=np.float32)[:1] + 0 * "
            "m.forward(np.zeros((1, 3, 64, 64), np.float32)))\n"
            "print(allocator.tuned, allocator.tune(), allocator.tuned)")
    glibc = str(platform.libc_ver()[0] == "glibc")
    for value, expected in ((None, f"False {glibc} {glibc}"), ("0", "False False False")):
        env = dict(os.environ)
        env.pop("MINICNN_TUNE_MALLOC", None)
        if value is not None:
            env["MINICNN_TUNE_MALLOC"] = value
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)
        assert run.stdout.strip() == expected


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_pool(monkeypatch, engine_setting):
    """multiprocessing's default start method on Linux forks: the child must not hand work to
    the parent's pool threads, which it does not have."""
    engine_setting("num_threads", 2)
    seen = []
    threads.run_chunks(lambda chunk: seen.append(chunk), [1, 2])  # the pool now exists
    assert sorted(seen) == [1, 2]
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if both chunks ran
        try:
            done = []
            threads.run_chunks(lambda chunk: done.append(chunk), [1, 2])
            os._exit(0 if sorted(done) == [1, 2] else 1)
        except BaseException:
            os._exit(2)
    import time
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung handing work to the parent's pool")


def test_run_chunks_waits_for_every_chunk_before_raising(monkeypatch, engine_setting):
    import time
    engine_setting("num_threads", 3)
    finished = []

    def work(chunk):
        if chunk == 0:
            raise RuntimeError("chunk 0 failed at once")
        time.sleep(0.2)
        finished.append(chunk)
    with pytest.raises(RuntimeError, match="chunk 0 failed"):
        threads.run_chunks(work, [0, 1, 2])
    assert sorted(finished) == [1, 2]  # nothing still running behind the caller's back


def test_run_chunks_from_inside_a_chunk_does_not_hang(monkeypatch, engine_setting):
    engine_setting("num_threads", 2)
    seen = []

    def inner(chunk):
        seen.append(chunk)

    def outer(chunk):
        threads.run_chunks(inner, [(chunk, 0), (chunk, 1)])  # e.g. a model pass inside a chunk
    threads.run_chunks(outer, [0, 1])
    assert sorted(seen) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_set_num_threads_takes_effect(engine_setting):
    engine_setting("num_threads", 1)
    assert threads.num_threads() == 1 and not threads.parallel_ok()
    assert threads.n_threads(1 << 30, 1) == 1


# ----------------------------------------------------------------------------- spin.py

def test_spin_until_and_its_python_twin_agree():
    counters = np.array([0, 5, -3], dtype=np.int64)
    for index in range(3):
        for target in (-4, -3, 0, 4, 5, 6):
            for spins in (0, 1, 50):
                expected = spin.spin_until_python(counters, index, target, spins)
                assert spin.spin_until(counters, index, target, spins) == expected
                assert expected == (spins > 0 and counters[index] >= target)


def test_spin_until_sees_another_thread_move_the_counter_without_holding_the_gil():
    """The setter is Python code: it can only run while spin_until waits if the spin holds
    no GIL, and the spin returns True only if it re-reads memory (no hoisted load)."""
    import threading
    import time
    counters = np.zeros(1, dtype=np.int64)

    def set_soon():
        time.sleep(0.01)
        counters[0] = 7
    setter = threading.Thread(target=set_soon)
    setter.start()
    seen = spin.spin_until(counters, 0, 7, 60 * spin.spins_per_second())  # up to a minute
    setter.join()
    assert seen


def test_hand_offs_work_whether_the_worker_is_watching_or_asleep(monkeypatch, engine_setting):
    """Back-to-back calls find the worker still watching its counter; calls after a pause
    longer than spin.spin_seconds() find it asleep on its lock. Both must run every chunk."""
    import time
    engine_setting("num_threads", 2)
    seen = np.zeros(2, int)

    def work(chunk):
        seen[chunk] += 1
    for call in range(60):
        if call % 3 == 0:
            time.sleep(3 * spin.spin_seconds())
        threads.run_chunks(work, [0, 1])
        np.testing.assert_array_equal(seen, call + 1)


@pytest.mark.skipif(os.name == "nt", reason="Windows never spins (no sched_yield)")
@pytest.mark.parametrize("value, spins", [("0", 0), ("250", None)])
def test_spin_time_comes_from_the_environment(value, spins):
    code = ("import numpy as np\n"
            "from minicnn.engine import settings\n"
            "from minicnn.engine.kernels.fast import spin, threads\n"
            "settings.set_num_threads(2)\n"
            "seen = np.zeros(2, int)\n"
            "def work(chunk): seen[chunk] += 1\n"
            "for _ in range(20): threads.run_chunks(work, [0, 1])\n"
            "assert (seen == 20).all()\n"
            "print(spin.spin_seconds(), threads._spins())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "MINICNN_SPIN_US": value})
    assert result.returncode == 0, result.stderr
    seconds, measured = result.stdout.split()
    assert float(seconds) == int(value) * 1e-6
    assert (int(measured) == 0) if spins == 0 else (int(measured) > 0)
