"""The explorer page in a real browser (headless Chromium, driven by selenium) against the
real command, ``minicnn explore``: load it, pick a sample, switch the method, the class and
the Grad-CAM layer, and check that each map on the page is the map ``minicnn saliency``
writes for the same inputs (the page keeps the map's raw values in
``window.minicnnExplorer.map``); choose LRP and its rule: the relevance ledger appears, a row
per node, its top row the explained score, and the trace follows the relevance; hover over a
pixel; a bad upload shows the command line's line and the next good one works; a request
without the token is refused.

The latencies (page load, a new map after a click, with the shipped model and with
MobileNetV2 when it has been fetched) are measured by the page itself, from the click to the
map drawn on screen, and recorded: printed at the end of the run, never asserted.
"""
import time

import numpy as np
import pytest

from minicnn import saliency
from minicnn.cli import main
from minicnn.io.fetch import model_status
from minicnn.io.images import Preprocess, read_image, to_input
from minicnn.io.weights import load
from tests.explore.conftest import LATENCIES, request, wait_for
from tests.explore.test_explorer import same_map

STATE = "window.minicnnExplorer"


def page_map(driver) -> np.ndarray:
    m = driver.execute_script(f"const m = {STATE}.map; "
                              "return {w: m.width, h: m.height, v: Array.from(m.values)};")
    return np.asarray(m["v"], np.float32).reshape(m["h"], m["w"])


def cli_map(tmp_path, path, method, *options):
    out = tmp_path / f"cli-{len(list(tmp_path.iterdir()))}"
    assert main(["saliency", str(path), "--method", method, "--out", str(out), *options]) == 0
    [npy] = out.glob("*.npy")
    return np.load(npy)


def act(driver, action, reason, **expected):
    """Do ``action`` (a click, a choice), wait for the next map drawn that answers
    ``expected`` (method, target, image...), -> the page's timing of it, in ms."""
    before = driver.execute_script(f"return {STATE}.explained;")
    action()
    checks = " && ".join(f"{STATE}.answer.{k} === {v!r}" if isinstance(v, str) else
                         f"{STATE}.answer.{k} === {v}" for k, v in expected.items())
    wait_for(driver, f"{STATE}.explained > {before} && {STATE}.busy === 0"
                     + (f" && {checks}" if checks else ""), timeout=300)
    timings = driver.execute_script(f"return {STATE}.timings;")
    return [t for t in timings if t["reason"] == reason][-1]["ms"]


def choose(driver, element_id, value):
    from selenium.webdriver.support.ui import Select
    return lambda: Select(driver.find_element("id", element_id)).select_by_value(value)


def choose_option(driver, name, value):
    from selenium.webdriver.support.ui import Select
    return lambda: Select(driver.find_element("css selector", f"#options select[name={name}]")
                          ).select_by_value(value)


def ledger_rows(driver) -> list:
    """The ledger table's body as the page shows it: a list of cell texts per row."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#ledger-table tbody tr'), "
        "r => Array.from(r.cells, c => c.textContent));")


def trace_caption(driver, step) -> str:
    """The trace's caption after the slider is moved to ``step`` ("max": the pixels)."""
    driver.execute_script("const s = document.getElementById('trace-step'); "
                          f"s.value = {'s.max' if step == 'max' else step}; "
                          "s.dispatchEvent(new Event('input'));")
    return driver.find_element("id", "trace-caption").text


def image_id(command, startswith):
    info = request(command.url + "api/info").json()
    return next(i for i in info["images"] if i["label"].startswith(startswith))


@pytest.fixture(scope="module")
def loaded(browser, command):
    """The page, loaded; the page-load latencies recorded."""
    started = time.perf_counter()
    browser.get(command.url)
    wait_for(browser, f"{STATE} && {STATE}.ready && {STATE}.traced > 0")
    wall = (time.perf_counter() - started) * 1000
    first_map = browser.execute_script(f"return {STATE}.loadMs;")
    load_event = browser.execute_script(
        "return performance.getEntriesByType('navigation')[0].loadEventEnd;")
    LATENCIES.extend([("page load: the load event (navigation timing)", load_event),
                      ("page load: the first map drawn (from navigation start)", first_map),
                      ("page load: browser.get to the first map and trace (selenium)", wall)])
    assert browser.execute_script(f"return {STATE}.error;") is None
    return browser


def test_the_maps_on_the_page_are_the_command_lines(loaded, command, tmp_path):
    driver = loaded
    sample = image_id(command, "test")                    # a shipped sample
    boot = [i for i in request(command.url + "api/info").json()["images"]
            if "(Ankle boot)" in i["label"]][0]
    from minicnn.io.samples import SAMPLES_DIR
    path = SAMPLES_DIR / boot["label"].split()[0]
    act(driver, choose(driver, "image", boot["id"]), "image", image=boot["id"],
        method="gradient")
    same_map(page_map(driver), cli_map(tmp_path, path, "gradient"))
    assert sample["id"] != boot["id"]

    ms = act(driver, choose(driver, "method", "guided_backprop"), "method",
             method="guided_backprop")
    LATENCIES.append(("shipped model: another method (guided backprop), click to map", ms))
    same_map(page_map(driver), cli_map(tmp_path, path, "guided_backprop"))

    second = driver.find_elements("css selector", "#top button")[1]
    target = int(second.get_attribute("data-index"))
    ms = act(driver, second.click, "class", method="guided_backprop", target=target)
    LATENCIES.append(("shipped model: another class (top-5 click), click to map", ms))
    same_map(page_map(driver), cli_map(tmp_path, path, "guided_backprop", "--target",
                                       str(target)))
    assert "chosen" in second.get_attribute("class")

    act(driver, choose(driver, "method", "grad_cam"), "method", method="grad_cam")
    assert driver.find_element("id", "layer-row").is_displayed()
    ms = act(driver, choose(driver, "layer", "features.17"), "layer", layer="features.17")
    LATENCIES.append(("shipped model: another Grad-CAM layer, click to map", ms))
    same_map(page_map(driver), cli_map(tmp_path, path, "grad_cam", "--target", str(target),
                                       "--layer", "features.17"))

    # the class by name, then the trace slider from the scores back to the pixels
    name_box = driver.find_element("id", "class-name")
    name_box.send_keys("sneaker")
    act(driver, driver.find_element("css selector", "#class-form button").click, "class",
        target=7)
    wait_for(driver, f"{STATE}.traced > 0 && document.getElementById('trace-step').max > 0")
    slider_max = int(driver.find_element("id", "trace-step").get_attribute("max"))
    trace = request(command.url + f"api/trace?network=net0&image={boot['id']}&target=7").json()
    assert slider_max == len(trace["steps"]) - 1
    driver.execute_script("const s = document.getElementById('trace-step'); s.value = s.max; "
                          "s.dispatchEvent(new Event('input'));")
    assert "the pixels" in driver.find_element("id", "trace-caption").text
    driver.save_screenshot(str(tmp_path / "explore.png"))
    assert driver.execute_script(f"return {STATE}.error;") is None


def test_lrp_shows_its_ledger_and_the_trace_follows_the_relevance(loaded, command, tmp_path):
    driver = loaded
    bag = next(i for i in request(command.url + "api/info").json()["images"]
               if i["label"].endswith("(Bag)"))
    from minicnn.io.samples import SAMPLES_DIR
    path = SAMPLES_DIR / bag["label"].split()[0]
    act(driver, choose(driver, "image", bag["id"]), "image", image=bag["id"])
    ms = act(driver, choose(driver, "method", "lrp"), "method", method="lrp")
    LATENCIES.append(("shipped model: LRP (epsilon-plus), click to map and ledger", ms))
    same_map(page_map(driver), cli_map(tmp_path, path, "lrp"), "lrp")

    # the ledger: a row per node and one for the input, the top row's relevance the score
    assert driver.find_element("id", "ledger").is_displayed()
    target = driver.execute_script(f"return {STATE}.answer.target;")
    model = load(None)
    x = to_input(read_image(path, Preprocess()), Preprocess())
    _, expected = saliency.lrp_ledger(model, x, target)
    rows = ledger_rows(driver)
    assert len(rows) == len(expected) == len(model.names) + 1
    assert [r[0] for r in rows] == [e["name"] for e in expected]
    classified = request(command.url + f"api/classify?network=net0&image={bag['id']}").json()
    score = next(t["score"] for t in classified["top"] if t["index"] == target)
    assert driver.execute_script(f"return {STATE}.ledger.rows[0][3];") == score
    shown = driver.find_element("css selector", f"#top button[data-index='{target}'] .num").text
    assert shown.startswith(f"score {rows[0][3]} ")         # the same number, as shown
    assert "reaching the pixels" in driver.find_element("id", "ledger-sum").text
    about = driver.execute_script(        # what each column is, in words under the table
        "return Array.from(document.querySelectorAll('#ledger-about div'), "
        "d => [d.querySelector('dt').textContent, d.querySelector('dd').textContent]);")
    heads = driver.execute_script("return Array.from(document.querySelectorAll("
                                  "'#ledger-table thead th'), h => h.textContent);")
    assert [label for label, _ in about] == heads == [
        "node", "layer", "rule", "relevance out", "passed on", "bias", "stabiliser",
        "BatchNorm", "residual"]
    assert dict(about)["passed on"] == "what it handed to its inputs"

    # another rule: the map is --rule's, the ledger and the trace follow it
    traced = driver.execute_script(f"return {STATE}.traced;")
    ms = act(driver, choose_option(driver, "rule", "z-plus"), "option", method="lrp")
    LATENCIES.append(("shipped model: LRP, another rule (z-plus), click to map and ledger", ms))
    same_map(page_map(driver), cli_map(tmp_path, path, "lrp", "--rule", "z-plus"), "lrp")
    assert "z-plus" in [r[2] for r in ledger_rows(driver)]
    wait_for(driver, f"{STATE}.traced > {traced} && {STATE}.busy === 0 && document."
                     "getElementById('trace-gradient-caption').textContent.includes('(z-plus)')")
    assert driver.find_element("css selector", "#trace h2.lrp-trace").is_displayed()
    assert trace_caption(driver, 0).startswith(
        f"step 1 of {len(rows)}: the scores: relevance starts as the score S_c = {rows[0][3]} ")
    assert trace_caption(driver, "max").startswith(
        f"step {len(rows)} of {len(rows)}: the pixels: the LRP map; relevance here totals "
        f"{ledger_rows(driver)[-1][3]} of the score's {rows[0][3]}")
    driver.save_screenshot(str(tmp_path / "explore-lrp.png"))
    assert driver.execute_script(f"return {STATE}.error;") is None

    # another method: the ledger goes, the trace is the gradient's again
    act(driver, choose(driver, "method", "guided_backprop"), "method", method="guided_backprop")
    assert not driver.find_element("id", "ledger").is_displayed()
    wait_for(driver, "document.querySelector('#trace h2.gradient-trace').offsetParent !== null")


def test_hovering_shows_the_pixel_and_the_map_there(loaded):
    from selenium.webdriver.common.action_chains import ActionChains
    act(loaded, choose(loaded, "method", "gradient"), "method", method="gradient")
    ActionChains(loaded).move_to_element_with_offset(
        loaded.find_element("id", "overlay-view"), 10, 10).perform()
    text = loaded.find_element("id", "readout").text
    assert text.startswith("pixel (") and "RGB (" in text and "map M = " in text
    assert "per channel (R " in text


def test_a_bad_upload_shows_the_line_and_the_next_one_works(loaded, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    loaded.find_element("id", "file").send_keys(str(bad))
    wait_for(loaded, f"{STATE}.error")
    error = loaded.find_element("id", "error")
    assert error.is_displayed()
    assert error.text == "minicnn: error: broken.png: not an image Pillow can read"
    from PIL import Image
    good = tmp_path / "mine.png"
    Image.new("RGB", (64, 64), (240, 200, 40)).save(good)
    ms = act(loaded, lambda: loaded.find_element("id", "file").send_keys(str(good)), "upload")
    LATENCIES.append(("shipped model: a dropped 64x64 file, upload to map", ms))
    assert loaded.execute_script(f"return {STATE}.answer.image;").startswith("up-")
    assert not loaded.find_element("id", "error").is_displayed()
    assert loaded.execute_script(f"return {STATE}.error;") is None


def test_a_request_without_the_token_is_refused(loaded, command):
    token = command.url.rstrip("/").rsplit("/", 1)[1]
    status = loaded.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/info').then(r => done(r.status));")
    assert status == 403
    assert loaded.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('api/info').then(r => done(r.status));") == 200
    loaded.get(command.url.replace(token + "/", ""))
    assert "needs the token" in loaded.find_element("tag name", "body").text
    loaded.get(command.url)                              # leave the page as it was
    wait_for(loaded, f"{STATE} && {STATE}.ready")


def test_mobilenet_v2_on_a_photo(loaded, command, tmp_path):
    if not model_status("mobilenet_v2").fetched:
        pytest.skip("MobileNetV2 is not fetched here (minicnn fetch mobilenet_v2)")
    driver = loaded
    ms = act(driver, choose(driver, "network", "fetch-mobilenet_v2"), "network",
             network="fetch-mobilenet_v2")
    LATENCIES.append(("MobileNetV2: chosen (loads the network, first pass), click to map", ms))
    photo = image_id(command, "grace_hopper.jpg")
    ms = act(driver, choose(driver, "image", photo["id"]), "image", image=photo["id"],
             method="gradient")
    LATENCIES.append(("MobileNetV2: a new image (forward + backward), click to map", ms))
    from minicnn.io.samples import sample_photo
    same_map(page_map(driver), cli_map(tmp_path, sample_photo(), "gradient", "--model",
                                       "mobilenet_v2"))
    assert page_map(driver).shape == (224, 224)
    ms = act(driver, choose(driver, "method", "guided_backprop"), "method",
             method="guided_backprop")
    LATENCIES.append(("MobileNetV2: another method (guided backprop), click to map", ms))
    second = driver.find_elements("css selector", "#top button")[1]
    target = int(second.get_attribute("data-index"))
    ms = act(driver, second.click, "class", target=target)
    LATENCIES.append(("MobileNetV2: another class (top-5 click), click to map", ms))
    ms = act(driver, choose(driver, "method", "grad_cam"), "method", method="grad_cam")
    LATENCIES.append(("MobileNetV2: Grad-CAM, click to map", ms))
    ms = act(driver, choose(driver, "method", "lrp"), "method", method="lrp")
    LATENCIES.append(("MobileNetV2: LRP (epsilon-plus), click to map and ledger", ms))
    server = driver.execute_script(f"return {STATE}.timings;")[-1]["server_ms"]
    LATENCIES.append(("MobileNetV2: LRP (epsilon-plus), on the server", server))
    rows = ledger_rows(driver)
    wait_for(driver, f"{STATE}.busy === 0")
    assert len(rows) == int(driver.find_element("id", "trace-step").get_attribute("max")) + 1
    classified = request(command.url + f"api/classify?network=fetch-mobilenet_v2&"
                                       f"image={photo['id']}").json()
    score = next(t["score"] for t in classified["top"] if t["index"] == target)
    assert driver.execute_script(f"return {STATE}.ledger.rows[0][3];") == score
    assert driver.execute_script(f"return {STATE}.error;") is None
    driver.save_screenshot(str(tmp_path / "explore-mobilenet.png"))
