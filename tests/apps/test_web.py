"""The web app (``collage app``): its endpoints through Starlette's TestClient, and once in a real browser.

The browser test drives the system Chromium (Debian's ``chromium``, installed by .ci/run) with
Playwright's Python API; Playwright never downloads a browser. It is skipped, saying why, only
when Chromium or Playwright is missing.
"""

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neural_collages.apps.cli import main
from neural_collages.apps.web import jobs
from neural_collages.apps.web.app import INTERNAL_ERROR, create_app
from neural_collages.codecs import decompress

with warnings.catch_warnings():  # newer Starlette prefers the httpx2 fork and warns about httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def png_bytes(width, height, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 0.5 + 0.4 * np.sin(xx / 5.0)[..., None] * np.cos(yy / 7.0)[..., None] * np.array([1.0, 0.6, 0.3])
    pixels = (np.clip(base + 0.03 * rng.standard_normal(base.shape), 0, 1) * 255).round().astype(np.uint8)
    image = Image.fromarray(pixels)
    if mode == "RGBA":
        image.putalpha(Image.fromarray(np.full((height, width), 128, np.uint8)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode_url(url, prefix):
    assert url.startswith(prefix + ";base64,")
    return base64.b64decode(url.split(",", 1)[1])


def url_image(url):
    return Image.open(io.BytesIO(decode_url(url, url.split(";", 1)[0])))


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app())


def assert_alive(client):
    assert client.get("/api/settings").status_code == 200


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "Fractal art" in page.text and "Codecs" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert "http" not in page.text.replace('lang="en"', "")  # no CDN, no external fonts
    settings = client.get("/api/settings").json()
    assert settings["qualities"]["neural"] == list(jobs.quality_levels("neural", "photo"))
    assert settings["range_sizes"] == [4, 8, 16] and settings["zooms"] == list(range(1, 9))


def test_fractalize_the_sample_renders_at_the_zoom(client):
    r = client.post("/api/fractalize", data={"sample": "1", "zoom": "2", "range": "16", "steps": "3"})
    assert r.status_code == 200, r.text
    out = r.json()
    W, H = out["width"], out["height"]
    assert (W, H) == (256, 256)
    assert url_image(out["result"]).size == (2 * W, 2 * H)
    assert url_image(out["original"]).size == (W, H)
    gif = url_image(out["animation"])
    assert gif.format == "GIF" and gif.n_frames >= 2  # Pillow merges repeated frames of a settled decode
    code = decode_url(out["code"], "data:application/octet-stream")
    assert len(code) == out["code_bytes"] and decompress(code).shape == (3, H, W)
    assert out["fit_seconds"] > 0 and 5 < out["psnr"] < 60 and out["collage_loss"] > 0


def test_fractalize_shrinks_large_uploads_and_says_so(client):
    files = {"image": ("wide.png", png_bytes(600, 300), "image/png")}
    r = client.post("/api/fractalize", files=files, data={"zoom": "1", "range": "16", "steps": "0"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["width"], out["height"]) == (512, 256)
    assert any("shrunk from 600x300 to 512x256" in note for note in out["notes"])


@pytest.mark.parametrize("codec, quality", [("pifs", 4), ("neural", 1)])
def test_codec_job_reports_size_and_decodes(client, codec, quality):
    files = {"image": ("small.png", png_bytes(64, 48), "image/png")}
    r = client.post("/api/codec", files=files, data={"codec": codec, "quality": str(quality), "scale": "3"})
    assert r.status_code == 200, r.text
    out = r.json()
    data = decode_url(out["code"], "data:application/octet-stream")
    assert out["bytes"] == len(data) and out["bpp"] == pytest.approx(8 * len(data) / (64 * 48))
    assert out["psnr"] > 18
    decoded = url_image(out["decoded"])
    assert decoded.size == (64, 48) and url_image(out["zoomed"]).size == (192, 144)
    expected = (decompress(data) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(decoded.convert("RGB")), expected)
    if out["jpeg"] is not None:  # JPEG at the same size or just below
        assert out["jpeg"]["bytes"] <= out["bytes"] and url_image(out["jpeg"]["image"]).format == "JPEG"


@pytest.mark.parametrize("endpoint", ["/api/fractalize", "/api/codec"])
def test_bad_uploads_get_one_clear_message_and_the_app_keeps_serving(client, endpoint):
    gif = io.BytesIO()
    Image.new("RGB", (32, 32)).save(gif, format="GIF")
    huge = io.BytesIO()
    Image.new("L", (2100, 2000)).save(huge, format="PNG")  # 4.2 megapixels in a few kB
    cases = [
        (("notes.txt", b"this is not an image", "text/plain"), "not an image file"),
        (("big.png", b"\x89PNG" + bytes(jobs.MAX_UPLOAD_BYTES), "image/png"), "big.png is larger than the 10 MB limit"),
        (("bigger.png", bytes(12 * 2**20), "image/png"), "the upload is larger than the 10 MB limit"),
        (("alpha.png", png_bytes(40, 40, mode="RGBA"), "image/png"), "transparency"),
        (("anim.gif", gif.getvalue(), "image/gif"), "GIF image"),
        (("huge.png", huge.getvalue(), "image/png"), "megapixels"),
        (("broken.png", png_bytes(40, 40)[:60], "image/png"), "broken.png: cannot read image"),
    ]
    for upload, message in cases:
        r = client.post(endpoint, files={"image": upload})
        assert r.status_code == 400, (upload[0], r.text)
        assert message in r.json()["error"], r.json()
        assert_alive(client)
    r = client.post(endpoint, data={"zoom": "2"})
    assert r.status_code == 400 and "no image" in r.json()["error"]
    r = client.post(endpoint, data={"sample": "1", "zoom": "99", "scale": "99"})
    assert r.status_code == 400 and "must be one of" in r.json()["error"]
    # And a good request still works after all of that.
    small = {"image": ("ok.png", png_bytes(32, 32), "image/png")}
    fields = {"zoom": "1", "range": "8", "steps": "0", "codec": "neural", "quality": "1", "scale": "1"}
    assert client.post(endpoint, files=small, data=fields).status_code == 200


def _data_url_bytes(url):
    return base64.b64decode(url.split(",", 1)[1])


def test_ifs_fits_a_point_file_and_a_drawing_and_returns_a_valid_ifs(client):
    from neural_collages.ifs.gallery import SIERPINSKI, sample
    from neural_collages.ifs.io import parse_ifs

    buffer = io.BytesIO()
    np.save(buffer, sample(SIERPINSKI, 3000).numpy())
    r = client.post("/api/ifs", files={"image": ("tri.npy", buffer.getvalue(), "application/octet-stream")},
                    data={"maps": "3", "method": "encoder"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["points"] == 3000 and body["dim"] == 2 and body["contraction_bound"] < 0.95
    A, t, p = parse_ifs(_data_url_bytes(body["ifs"]))
    assert A.shape == (3, 2, 2)
    for key in ("cloud", "attractor"):
        with Image.open(io.BytesIO(_data_url_bytes(body[key]))) as im:
            assert im.size == (jobs.IFS_IMAGE_SIZE, jobs.IFS_IMAGE_SIZE)
    drawing = Image.new("L", (60, 40), 255)
    drawing.paste(0, (10, 10, 50, 14))  # a dark bar: its pixels are the points
    png = io.BytesIO()
    drawing.save(png, format="PNG")
    r = client.post("/api/ifs", files={"image": ("bar.png", png.getvalue(), "image/png")},
                    data={"maps": "2", "method": "encoder"})
    assert r.status_code == 400 and "no IFS encoder" in r.json()["error"]  # none shipped for 2 maps: says so
    r = client.post("/api/ifs", files={"image": ("bar.png", png.getvalue(), "image/png")}, data={"maps": "3"})
    assert r.status_code == 200 and r.json()["points"] == 40 * 4


def test_ifs_bad_uploads_get_one_clear_message_and_the_app_keeps_serving(client):
    cases = [
        (("pts.xyz", b"1 2\nnan 3\n", "text/plain"), "NaN"),
        (("pts.npy", b"\x93NUMPY junk", "application/octet-stream"), "npy"),
        (("pts.ply", b"ply\nformat ascii 1.0\nelement vertex 99999999\nproperty float x\nproperty float y\n"
                     b"end_header\n1 2\n", "application/octet-stream"), "vertices"),
        (("two.xyz", b"1 2\n3 4\n", "text/plain"), "at least"),
        (("notes.doc", b"words", "application/msword"), "not an image file"),
        (("blank.png", _white_png(), "image/png"), "no dark pixels"),
    ]
    for upload, message in cases:
        r = client.post("/api/ifs", files={"image": upload}, data={"maps": "4"})
        assert r.status_code == 400, (upload[0], r.text)
        assert message in r.json()["error"], r.json()
        assert "/tmp" not in r.json()["error"]  # the temporary path is never shown, the upload's name is
        assert_alive(client)
    r = client.post("/api/ifs", data={"sample": "1", "maps": "99"})
    assert r.status_code == 400 and "must be one of" in r.json()["error"]


def test_vae_samples_the_same_digits_at_1x_and_at_the_scale(client):
    r = client.post("/api/vae", data={"count": "4", "scale": "10", "temperature": "0.85", "seed": "3"})
    assert r.status_code == 200, r.text
    body = r.json()
    small, large = url_image(body["small"]), url_image(body["samples"])
    assert small.size == (56, 56) and large.size == (560, 560)
    # The same latents: the large grid pooled by 10 is close to the 1x grid (means are a sigmoid of
    # the fixed point, which pools exactly).
    a = np.asarray(small, np.float64)
    b = np.asarray(large, np.float64).reshape(56, 10, 56, 10).mean(axis=(1, 3))
    assert np.abs(a - b).mean() < 8.0
    again = client.post("/api/vae", data={"count": "4", "scale": "10", "temperature": "0.85", "seed": "3"}).json()
    assert again["samples"] == body["samples"]


@pytest.mark.parametrize("fields, message", [
    ({"count": "16", "scale": "40"}, "limit"),
    ({"count": "5"}, "must be one of"),
    ({"scale": "3"}, "must be one of"),
    ({"temperature": "9"}, "must be one of"),
    ({"seed": "-1"}, "must be one of"),
])
def test_vae_bad_settings_get_one_clear_message(client, fields, message):
    r = client.post("/api/vae", data=fields)
    assert r.status_code == 400 and message in r.json()["error"]
    assert_alive(client)


def _white_png():
    buffer = io.BytesIO()
    Image.new("L", (20, 20), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def test_unexpected_errors_are_a_generic_500_and_the_app_keeps_serving(client, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(jobs, "fractal_job", boom)
    r = client.post("/api/fractalize", data={"sample": "1"})
    assert r.status_code == 500 and r.json() == {"error": INTERNAL_ERROR}
    assert_alive(client)


def test_jobs_run_one_at_a_time(monkeypatch):
    client = TestClient(create_app())
    active, peak, guard = [0], [0], threading.Lock()

    def slow_job(*args):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.3)
        with guard:
            active[0] -= 1
        return {"ok": True}

    monkeypatch.setattr(jobs, "read_upload", lambda *args, **kwargs: None)
    monkeypatch.setattr(jobs, "fractal_job", slow_job)
    monkeypatch.setattr(jobs, "codec_job", slow_job)
    answers = []
    threads = [threading.Thread(target=lambda url=url: answers.append(client.post(url, data={"sample": "1"})))
               for url in ("/api/fractalize", "/api/codec", "/api/fractalize")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in answers] == [200, 200, 200] and peak[0] == 1


def test_app_help_needs_neither_torch_nor_the_web_stack():
    probe = (
        "import sys\n"
        "from neural_collages.apps.cli import main\n"
        "try:\n    main(['app', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'starlette', 'uvicorn') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: collage app" in result.stdout and result.stdout.strip().endswith("[]")


def test_app_refuses_a_port_in_use_with_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("collage: error: cannot listen on 127.0.0.1:") and "\n" not in err


# --------------------------------------------------------------------------- in a real browser


def _chromium():
    return shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chromium_path():
    """The system Chromium, and Playwright importable; otherwise the browser test skips, saying why."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no system Chromium (apt-get install chromium; .ci/run installs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    return chromium


@pytest.fixture
def served_app(tmp_path):
    """``collage app`` in a subprocess on a free local port; yields its base URL."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "neural_collages", "app", "--port", str(port), "--threads", "2"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"collage app did not start:\n{log.read()}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def image_size(page, selector, timeout_ms=60_000):
    """[naturalWidth, naturalHeight] of an <img> once its result is shown and decoded.

    (Playwright's wait_for_function evaluates strings, which the page's CSP forbids; evaluating
    a function on a located element is not subject to it.)
    """
    page.locator(selector).wait_for(state="visible", timeout=timeout_ms)
    return page.locator(selector).evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])")


@pytest.mark.slow
def test_the_page_in_headless_chromium(chromium_path, served_app, tmp_path):
    from playwright.sync_api import sync_playwright
    image = tmp_path / "tile.png"
    image.write_bytes(png_bytes(64, 64))
    not_image = tmp_path / "notes.txt"
    not_image.write_text("not an image")
    shots = [tmp_path / "web.png", tmp_path / "web-codec.png", tmp_path / "web-ifs.png", tmp_path / "web-vae.png"]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems, requests = [], []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            expected = "the server responded with a status of 400"  # the refused upload below
            page.on("request", lambda req: requests.append(req.url))
            page.goto(served_app)
            assert page.title() == "Neural Collages"
            page.wait_for_selector("#art-zoom option[value='2']", state="attached")

            # Fractal art: a 64x64 upload, range 8, zoom 2.
            page.set_input_files("#art-file", str(image))
            page.select_option("#art-range", "8")
            page.select_option("#art-zoom", "2")
            page.click("#art-run")
            assert image_size(page, "#art-output") == [128, 128]
            assert page.is_hidden("#art-error")
            assert "dB" in page.inner_text("#art-metrics")
            assert page.locator("#art-downloads a").count() == 3
            page.screenshot(path=str(shots[0]), full_page=True)

            # A file that is not an image: the message is shown, and the page keeps working.
            page.set_input_files("#art-file", str(not_image))
            page.click("#art-run")
            page.wait_for_selector("#art-error", state="visible", timeout=30_000)
            assert "not an image file" in page.inner_text("#art-error")

            # Codecs: the bundled sample with the neural codec, zoomed 2x, next to JPEG.
            page.click("#tab-codec")
            page.select_option("#codec-codec", "neural")
            page.select_option("#codec-quality", "1")
            page.select_option("#codec-scale", "2")
            page.click("#codec-sample")
            assert image_size(page, "#codec-zoomed") == [512, 512]
            assert page.locator("#codec-table tr").count() == 2  # the codec, and JPEG at that size (or why not)
            page.screenshot(path=str(shots[1]), full_page=True)

            # IFS fractals: the fern cloud, 4 maps, the shipped encoder + refinement.
            page.click("#tab-ifs")
            page.select_option("#ifs-maps", "4")
            page.select_option("#ifs-method", "encoder")
            page.click("#ifs-sample")
            assert image_size(page, "#ifs-attractor") == [jobs.IFS_IMAGE_SIZE, jobs.IFS_IMAGE_SIZE]
            assert "contraction bound" in page.inner_text("#ifs-metrics")
            assert page.locator("#ifs-downloads a").count() == 2
            page.screenshot(path=str(shots[2]), full_page=True)

            # Digits: 9 samples of the Collage VAE at 20x.
            page.click("#tab-vae")
            page.select_option("#vae-count", "9")
            page.select_option("#vae-scale", "20")
            page.click("#vae-run")
            assert image_size(page, "#vae-samples") == [3 * 560, 3 * 560]
            assert image_size(page, "#vae-small") == [84, 84]
            assert page.locator("#vae-downloads a").count() == 2
            page.screenshot(path=str(shots[3]), full_page=True)
        finally:
            browser.close()

    artefacts = os.environ.get("COLLAGE_ARTEFACTS")
    if artefacts:
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, Path(artefacts) / shot.name)
    assert [m for m in problems if expected not in m] == [], problems  # no script errors, no CSP violations
    assert all(u.startswith(served_app) or u.startswith("data:") for u in requests), requests
    assert all(shot.stat().st_size > 10_000 for shot in shots)
