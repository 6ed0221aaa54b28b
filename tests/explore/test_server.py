"""The explorer's HTTP side (minicnn/explore/server.py), with plain requests: the token on
every request, nothing served but its own three files, the safety headers, a bad upload as
the command line's line with the server going on, an unexpected error likewise, two "tabs"
asking at once, LRP's ledger as JSON (its totals the model's own) and LRP's rule checked as
the command line checks it."""
import base64
import http.client
import threading
import urllib.parse

import numpy as np
import pytest

from minicnn import saliency
from minicnn.cli import main
from minicnn.explore import MAX_UPLOAD_BYTES
from minicnn.io.images import Preprocess, read_image, to_input
from minicnn.io.samples import SAMPLES_DIR
from minicnn.io.weights import load
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
    answer = api(served, "api/explain", network="net0", image=image, method="lime")
    assert answer.status == 400
    assert answer.json()["error"].startswith("minicnn: error: unknown method 'lime': choose one "
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


def sample_path(served, image):
    label = next(i["label"] for i in api(served, "api/info").json()["images"] if i["id"] == image)
    return SAMPLES_DIR / label.split()[0]


@pytest.mark.parametrize("rule", [None, "epsilon-gamma-box", "alpha2-beta1"])
def test_the_ledger_arrives_with_the_models_totals(served, rule):
    """The ledger's JSON: a row per node and one for the input, and totals equal to
    ``model.ledger()`` of the same pass on the same model: the score at the top, what reached
    the pixels at the bottom, each absorbed column and the residual summed over the nodes."""
    info = api(served, "api/info").json()
    image = [i["id"] for i in info["images"] if i["group"] == "sample"][5]
    options = {} if rule is None else {"opt.rule": rule}
    answer = api(served, "api/explain", network="net0", image=image, method="lrp", target="6",
                 **options)
    assert answer.status == 200
    sent = answer.json()
    ledger = sent["ledger"]
    assert sent["rule"] == saliency.describe_rule(rule or saliency.DEFAULT_RULE)

    model = load(None)
    x = to_input(read_image(sample_path(served, image), Preprocess()), Preprocess())
    scores = model.forward(x)                                                     # (1, 10)
    model.backward(saliency.relevance_seed(scores, [6]),
                   rule=saliency.resolve_rule(rule or saliency.DEFAULT_RULE, model))
    expected = model.ledger()
    assert [row[0] for row in ledger["rows"]] == [e["name"] for e in expected]
    assert [row[2] for row in ledger["rows"]] == [e["rule"] for e in expected]
    totals = ledger["totals"]
    score = float(scores[0, 6])
    tol = 1e-5 * float(np.abs(scores).max())       # float32 rounding in another thread
    assert totals["score"] == ledger["rows"][0][3] == pytest.approx(score, abs=tol)
    assert totals["input"] == pytest.approx(float(expected[-1]["relevance_out"][0]), abs=tol)
    assert ledger["rows"][-1][3] == totals["input"]
    for term in ("bias", "stabiliser", "batchnorm", "residual"):
        assert totals[term] == pytest.approx(sum(float(e[term][0]) for e in expected[:-1]),
                                             abs=tol), term
    assert sum(totals[k] for k in ("input", "bias", "stabiliser", "batchnorm", "residual")) \
        == pytest.approx(totals["score"], abs=1e-9 * tol)
    assert api(served, "api/explain", network="net0", image=image, method="gradient",
               target="6").json()["ledger"] is None


def test_an_unknown_rule_is_the_command_lines_line(served, tmp_path, capsys):
    info = api(served, "api/info").json()
    image = info["first"]["image"]
    path = sample_path(served, image)
    capsys.readouterr()
    assert main(["saliency", str(path), "--method", "lrp", "--rule", "z-minus",
                 "--out", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("minicnn: error: --rule z-minus: unknown LRP rule or composite")
    for path_, params in [("api/explain", {"method": "lrp", "opt.rule": "z-minus"}),
                          ("api/trace", {"method": "lrp", "rule": "z-minus"})]:
        answer = api(served, path_, network="net0", image=image, **params)
        assert answer.status == 400 and answer.json() == {"error": line}, path_
    assert main(["trace", str(path), "--rule", "z-plus", "--out", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip()
    answer = api(served, "api/trace", network="net0", image=image, rule="z-plus")
    assert answer.status == 400 and answer.json() == {"error": line}
    assert api(served, "api/info").status == 200                     # and the server goes on


def test_the_relevance_trace_arrives_with_its_totals(served):
    """The trace of LRP's relevance: at every node, the relevance left at its output is the
    ledger's "relevance out" (the score at the top), and the pixels' map sums to what
    reached them."""
    info = api(served, "api/info").json()
    image = info["first"]["image"]
    sent = api(served, "api/trace", network="net0", image=image, method="lrp",
               rule="z-plus").json()
    assert sent["method"] == "lrp" and sent["rule"] == "z-plus"
    ledger = api(served, "api/explain", network="net0", image=image, method="lrp",
                 **{"opt.rule": "z-plus"}).json()["ledger"]          # the predicted class: S_c > 0
    tol = 1e-5 * ledger["totals"]["score"]
    assert [s["name"] for s in sent["steps"]] == [row[0] for row in ledger["rows"]]
    for step, row in zip(sent["steps"], ledger["rows"]):
        assert step["total"] == pytest.approx(row[3], abs=tol), step["name"]
    pixels = decode(sent["steps"][-1]["gradient"])                           # (64, 64)
    assert pixels.shape == (64, 64)
    assert float(pixels.sum(dtype=np.float64)) == pytest.approx(ledger["totals"]["input"], abs=tol)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "[::1]"])
def test_loopback_addresses(host):
    from minicnn.explore import is_loopback
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.4", "example.org", ""])
def test_other_addresses(host):
    from minicnn.explore import is_loopback
    assert not is_loopback(host)
