"""The explorer's HTTP side (minicnn/explore/server.py), with plain requests: the token on
every request, nothing served but its own three files, the safety headers, a bad upload as
the command line's line with the server going on, an unexpected error likewise, and two
"tabs" asking at once."""
import base64
import http.client
import threading
import urllib.parse

import numpy as np
import pytest

from minicnn.explore import MAX_UPLOAD_BYTES
from tests.explore.conftest import request
from tests.explore.test_explorer import png, same_map


def decode(a):
    return np.frombuffer(base64.b64decode(a["data"]), dtype=a["dtype"]).reshape(a["shape"])


def api(served, path, **params):
    return request(served.url + path + ("?" + urllib.parse.urlencode(params) if params else ""))


def root(served):
    return served.url.split(served.token)[0]          # http://127.0.0.1:PORT/


def test_every_request_needs_the_token(served):
    assert api(served, "api/info").status == 200
    wrong = "x" * len(served.token)
    for path in ["", "api/info", "app.js", f"{wrong}/", f"{wrong}/api/info",
                 f"{served.token[:-1]}/api/info", f"api/info?token={served.token}"]:
        answer = request(root(served) + path)
        assert answer.status == 403, path
        assert answer.json() == {"error": "minicnn: error: this address needs the token that "
                                          "`minicnn explore` printed"}
    refused = request(root(served) + "api/upload", data=png(), method="POST")
    assert refused.status == 403


def test_it_serves_its_own_files_and_nothing_else(served):
    for path in ["../../../../etc/passwd", "%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd",
                 "static/app.js", "explorer.py", "__init__.py", "static/../server.py",
                 "index.html", "api/../app.js?x=..%2f..%2f", "api/upload"]:
        answer = request(served.url + path)
        assert answer.status == 404, path
        assert b"root:" not in answer.body and b"import" not in answer.body
    assert request(served.url + "api/info", data=b"{}", method="POST").status == 404


def test_the_three_assets_carry_the_safety_headers_and_nothing_from_elsewhere(served):
    sizes = 0
    for path, kind in [("", "text/html"), ("app.js", "text/javascript"),
                       ("style.css", "text/css")]:
        answer = request(served.url + path)
        assert answer.status == 200 and answer.headers["Content-Type"].startswith(kind)
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["Cache-Control"] == "no-store"
        text = answer.body.decode()
        assert "http:" not in text and "https:" not in text and "//cdn" not in text
        sizes += len(answer.body)
    assert sizes < 100_000                             # hand-written, no framework
    moved = request(served.url.rstrip("/"))            # /<token> -> /<token>/
    assert moved.status == 200 and moved.body.startswith(b"<!doctype html>")


def test_a_bad_upload_is_the_command_lines_line_and_the_server_goes_on(served):
    headers = {"X-File-Name": urllib.parse.quote("my broken.png"),
               "Content-Type": "application/octet-stream"}
    bad = request(served.url + "api/upload", data=b"not an image", headers=headers,
                  method="POST")
    assert bad.status == 400
    assert bad.json() == {"error": "minicnn: error: my broken.png: not an image Pillow can "
                                   "read"}
    good = request(served.url + "api/upload", data=png(), headers=headers, method="POST")
    assert good.status == 200
    image = good.json()["id"]
    info = api(served, "api/info").json()
    assert image in [i["id"] for i in info["images"] if i["group"] == "uploaded"]
    answer = api(served, "api/explain", network="net0", image=image, method="gradient")
    assert answer.status == 200 and decode(answer.json()["map"]).shape == (64, 64)


def test_an_upload_over_the_limit_is_refused_before_its_body_is_read(served):
    host, port = served.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=60)
    connection.putrequest("POST", f"/{served.token}/api/upload")
    connection.putheader("Content-Length", str(MAX_UPLOAD_BYTES + 1))
    connection.putheader("X-File-Name", "big.tif")
    connection.endheaders()                             # and no body at all
    answer = connection.getresponse()
    assert answer.status == 400
    assert answer.read().decode() == (
        f'{{"error": "minicnn: error: big.tif: {MAX_UPLOAD_BYTES + 1:,} bytes, more than the '
        f'upload limit of {MAX_UPLOAD_BYTES:,}"}}')
    connection.close()
    assert api(served, "api/info").status == 200


def test_bad_parameters_are_one_line(served):
    info = api(served, "api/info").json()
    image = info["first"]["image"]
    answer = api(served, "api/explain", network="net0", image=image, method="lrp")
    assert answer.status == 400
    assert answer.json()["error"].startswith("minicnn: error: unknown method 'lrp': choose one "
                                             "of gradient, ")
    answer = api(served, "api/explain", network="net0", image=image, method="smoothgrad",
                 **{"opt.n_samples": "10000"})
    assert answer.json() == {"error": "minicnn: error: smoothgrad: n_samples must lie in "
                                      "1..500, got 10000"}
    answer = api(served, "api/classify", network="fetch-vgg19_bn", image=image)
    assert answer.status == 400 and "run minicnn fetch vgg19_bn" in answer.json()["error"]


def test_an_unexpected_error_is_500_and_the_server_goes_on(served, monkeypatch):
    def broken(*args):
        raise RuntimeError("boom")
    monkeypatch.setattr(served.explorer, "classify", broken)
    answer = api(served, "api/classify", network="net0", image="img1")
    assert answer.status == 500
    assert answer.json()["error"].startswith("minicnn: error: internal error (RuntimeError: "
                                             "boom)")
    monkeypatch.undo()
    assert api(served, "api/classify", network="net0", image="img1").status == 200


def test_two_tabs_at_once_get_their_own_maps(served):
    """Requests for different images, methods and classes on the same network, from four
    threads at once, each answered as if it had been alone: the passes do not interleave
    (a map of another image or class would be far off, not a rounding apart)."""
    info = api(served, "api/info").json()
    images = [i["id"] for i in info["images"] if i["group"] == "sample"][:4]
    asks = [dict(network="net0", image=image, method=method, target=str(target))
            for image in images for method, target in [("gradient", 1), ("guided_backprop", 7),
                                                      ("grad_cam", 3), ("input_x_gradient", 0)]]
    alone = {i: decode(api(served, "api/explain", **ask).json()["map"])
             for i, ask in enumerate(asks)}
    served.explorer._networks["net0"].answers.clear()       # make them compute again
    together, errors = {}, []

    def tab(indices):
        for i in indices:
            answer = api(served, "api/explain", **asks[i])
            if answer.status != 200:
                errors.append(answer.body)
            else:
                together[i] = decode(answer.json()["map"])
    tabs = [threading.Thread(target=tab, args=(list(range(k, len(asks), 4))[::-1 if k % 2 else 1],))
            for k in range(4)]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join(300)
    assert not errors and len(together) == len(asks)
    for i in alone:
        same_map(together[i], alone[i], asks[i]["method"])


def test_the_trace_and_the_map_arrive_as_arrays(served):
    info = api(served, "api/info").json()
    image = info["first"]["image"]
    answer = api(served, "api/trace", network="net0", image=image, target="2").json()
    assert answer["steps"][0]["name"] == "classifier.4" and answer["steps"][-1]["name"] == "input"
    assert decode(answer["steps"][0]["gradient"]).tolist() == np.eye(10)[2].tolist()
    assert decode(answer["steps"][-1]["gradient"]).shape == (64, 64)
    direct = served.explorer.explain("net0", image, "gradient", target=2)
    sent = api(served, "api/explain", network="net0", image=image, method="gradient",
               target="2").json()
    assert decode(sent["map"]).tolist() == direct["map"].tolist()   # the same answer kept
    assert sent["forward"] == "reused"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "[::1]"])
def test_loopback_addresses(host):
    from minicnn.explore import is_loopback
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.4", "example.org", ""])
def test_other_addresses(host):
    from minicnn.explore import is_loopback
    assert not is_loopback(host)
