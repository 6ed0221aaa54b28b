"""``minicnn explore`` as a user runs it (cli.cmd_explore): the address printed and served
until SIGTERM; and its bad input, each the command line's one line: a port in use, an
unreadable image (the page opens with the others), a weights file that does not load (before
the server starts), another host (a warning)."""
import socket

import pytest
from PIL import Image

from minicnn.cli import main
from tests.explore.conftest import Command, request


def test_it_prints_the_address_and_serves_until_stopped(tmp_path):
    photo = tmp_path / "mine.png"
    Image.new("RGB", (80, 60), (20, 120, 220)).save(photo)
    running = Command([photo, "--port", "0"], tmp_path)
    try:
        assert running.url.startswith("http://127.0.0.1:")
        page = request(running.url)
        assert page.status == 200 and b"minicnn explorer" in page.body
        info = request(running.url + "api/info").json()
        named = [i for i in info["images"] if i["group"] == "named"]
        assert [i["label"] for i in named] == [str(photo)]
        assert info["first"]["image"] == named[0]["id"]          # the image named comes first
        assert info["networks"][0]["kind"] == "shipped"
    finally:
        code = running.stop()
    assert code == 0
    assert running.out.read_text().splitlines()[-1] == "minicnn explore: stopped"
    assert running.err.read_text() == ""


def test_a_port_in_use_is_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["explore", "--port", str(port), "--no-browser"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"minicnn: error: port {port} on 127.0.0.1 is in use: choose "
                            f"another with --port N (--port 0 picks a free one)\n")
    assert captured.out == ""


def test_an_unreadable_image_is_its_line_and_the_page_opens_with_the_others(tmp_path, capsys):
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    missing = tmp_path / "missing.png"
    assert main(["saliency", str(broken), str(missing), "--out", str(tmp_path / "o")]) == 2
    cli_lines = capsys.readouterr().err                    # the command line's own words
    running = Command([good, broken, missing, "--port", "0"], tmp_path)
    try:
        info = request(running.url + "api/info").json()
        assert [i["label"] for i in info["images"] if i["group"] == "named"] == [str(good)]
    finally:
        code = running.stop()
    assert code == 2                                       # as the other commands say it
    assert sorted(running.err.read_text().splitlines()) == sorted(cli_lines.splitlines())
    assert sorted(cli_lines.splitlines()) == sorted([
        f"minicnn: error: {broken}: not an image Pillow can read",
        f"minicnn: error: {missing}: no such file"])


def test_a_weights_file_that_fails_is_its_line_before_the_server_starts(tmp_path, capsys,
                                                                         monkeypatch):
    bad = tmp_path / "weights.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["explore", "--model", str(bad), "--port", "0", "--no-browser"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""                              # no address: nothing listens
    [line] = captured.err.splitlines()
    assert line.startswith(f"minicnn: error: {bad}")
    monkeypatch.setenv("MINICNN_CACHE", str(tmp_path / "cache"))
    assert main(["explore", "--model", "mobilenet_v3_small", "--port", "0",
                 "--no-browser"]) == 2
    assert capsys.readouterr().err == ("minicnn: error: mobilenet_v3_small is not fetched yet: "
                                       "run minicnn fetch mobilenet_v3_small\n")


def test_another_host_warns(tmp_path):
    running = Command(["--host", "0.0.0.0", "--port", "0"], tmp_path)
    try:
        assert running.url.startswith("http://0.0.0.0:")
    finally:
        running.stop()
    assert running.err.read_text() == (
        "minicnn: warning: listening on 0.0.0.0: other machines that reach it can use the "
        "page; only the token in the address guards it\n")


def test_a_port_out_of_range_is_one_line(capsys):
    assert main(["explore", "--port", "65536", "--no-browser"]) == 2
    assert capsys.readouterr().err == "minicnn: error: --port must be 0..65535, got 65536\n"
    with pytest.raises(SystemExit) as e:                   # argparse's own one line
        main(["explore", "--port", "-1", "--no-browser"])
    assert e.value.code == 2
    assert "argument --port: must be an int >= 0, got -1" in capsys.readouterr().err
