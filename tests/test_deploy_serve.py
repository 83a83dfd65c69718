"""deploy.serve: the JSON endpoint through Starlette's test client, the page in a real headless Chromium."""
import html
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
from deploy_tiny import CLASSES, SIZE, make_run
from PIL import Image

from common.data import decode_image
from common.errors import UserError
from deploy import export as export_command
from deploy import serve

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 50_000


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("deploy_serve"))
    export_command.main(["--run-dir", str(run), "--formats", "tflite", "tflite_int8"])
    return run / "export"


@pytest.fixture(scope="module")
def client(export_dir):
    from fastapi.testclient import TestClient

    return TestClient(serve.create_app(export_dir, max_upload_bytes=LIMIT, top_k=2))


def image_file(export_dir, index=0) -> Path:
    folder = export_dir.parent.parent / "data" / "validation" / CLASSES[1]
    return sorted(folder.iterdir())[index]


def keras_probabilities(export_dir, path) -> np.ndarray:
    model = keras.saving.load_model(export_dir.parent / "model.keras")
    return model.predict(np.asarray(decode_image(str(path), (SIZE, SIZE)))[None], verbose=0)[0]


def encoded(kind: str, size=(30, 20)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, kind)
    return buffer.getvalue()


def test_the_endpoint_answers_with_the_models_probabilities(client, export_dir):
    path = image_file(export_dir)
    response = client.post("/api/predict?top_k=3", files={"image": (path.name, path.read_bytes(), "image/jpeg")})
    assert response.status_code == 200
    answer = response.json()
    expected = keras_probabilities(export_dir, path)
    got = np.array([answer["probabilities"][name] for name in CLASSES])
    assert np.abs(got - expected).max() <= 1e-4  # the upload is decoded as training decoded the file
    assert [item["label"] for item in answer["top"]] == [CLASSES[i] for i in np.argsort(-expected)]
    assert answer["file"] == path.name and answer["format"] == "tflite"
    # the default top_k (2 here), and the model description
    short = client.post("/api/predict", files={"image": (path.name, path.read_bytes(), "image/jpeg")}).json()
    assert len(short["top"]) == 2 and short["top"] == answer["top"][:2]
    info = client.get("/api/info").json()
    assert info["class_names"] == list(CLASSES) and info["image_size"] == SIZE


def test_a_png_sent_without_a_type_is_read_by_its_content(client):
    response = client.post("/api/predict", files={"image": ("red.png", encoded("PNG"), "application/octet-stream")})
    assert response.status_code == 200 and set(response.json()["probabilities"]) == set(CLASSES)


def _truncated_jpeg() -> bytes:
    """A download cut short: the JPEG header is whole (Pillow opens it), half the compressed data is missing."""
    noise = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data[: len(data) // 2])).format == "JPEG"
    return data[: len(data) // 2]


@pytest.mark.parametrize("problem, status, message", [
    ("text file", 415, "not an image (it was sent as text/plain)"),
    ("tiff", 415, "TIFF images are not read"),
    ("too large", 413, f"the limit is {LIMIT:,} bytes"),
    ("empty", 400, "the upload is empty"),
    ("no file", 400, "no file in the form field 'image'"),
    ("garbage declared as jpeg", 400, "cannot be read as an image"),
    ("truncated jpeg", 400, "could not be decoded (corrupt or cut short?): jpeg::Uncompress failed"),
    ("json body", 415, "send the image as multipart/form-data"),
    ("bad top_k", 400, "top_k must be a whole number"),
])
def test_a_bad_upload_gets_a_clear_4xx_and_the_server_goes_on(client, export_dir, problem, status, message):
    url, files, extra = "/api/predict", None, {}
    if problem == "text file":
        files = {"image": ("notes.txt", b"not a picture", "text/plain")}
    if problem == "tiff":
        files = {"image": ("red.tif", encoded("TIFF"), "image/tiff")}
    if problem == "too large":
        files = {"image": ("big.bmp", encoded("BMP", (200, 100)), "image/bmp")}  # 60 kB
    if problem == "empty":
        files = {"image": ("empty.jpg", b"", "image/jpeg")}
    if problem == "no file":
        files = {"picture": ("a.jpg", image_file(export_dir).read_bytes(), "image/jpeg")}
    if problem == "garbage declared as jpeg":
        files = {"image": ("a.jpg", b"\x00" * 500, "image/jpeg")}
    if problem == "truncated jpeg":
        files = {"image": ("cut.jpg", _truncated_jpeg(), "image/jpeg")}
    if problem == "json body":
        extra = {"content": json.dumps({"image": "a.jpg"}), "headers": {"content-type": "application/json"}}
    if problem == "bad top_k":
        url, files = "/api/predict?top_k=0", {"image": ("a.jpg", image_file(export_dir).read_bytes(), "image/jpeg")}
    response = client.post(url, files=files, **extra)
    assert response.status_code == status and message in response.json()["detail"]
    # the page says the same, in its error line
    if problem not in ("bad top_k",):
        page = client.post("/", files=files, **extra)
        assert page.status_code == status and html.escape(message) in page.text and 'id="error"' in page.text
    good = client.post("/api/predict", files={"image": ("a.jpg", image_file(export_dir).read_bytes(), "image/jpeg")})
    assert good.status_code == 200


def test_the_page_shows_the_image_with_its_top_classes(client, export_dir):
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text and 'enctype="multipart/form-data"' in page.text
    path = image_file(export_dir)
    result = client.post("/", files={"image": ("<b>x</b>.jpg", path.read_bytes(), "image/jpeg")})
    assert result.status_code == 200
    assert 'src="data:image/jpeg;base64,' in result.text and result.text.count('class="label"') == 2
    assert "&lt;b&gt;x&lt;/b&gt;.jpg" in result.text and "<b>x</b>" not in result.text  # names are escaped
    best = CLASSES[int(np.argmax(keras_probabilities(export_dir, path)))]
    assert f'<td class="label">{best}</td>' in result.text.split("</tr>")[1]


def test_the_int8_model_can_be_served(export_dir):
    from fastapi.testclient import TestClient

    client = TestClient(serve.create_app(export_dir, "tflite_int8"))
    path = image_file(export_dir)
    answer = client.post("/api/predict", files={"image": (path.name, path.read_bytes(), "image/jpeg")}).json()
    assert answer["format"] == "tflite_int8" and sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    with pytest.raises(UserError, match="has no onnx model"):
        serve.create_app(export_dir, "onnx")


def test_the_server_binds_this_machine_only_by_default(export_dir, tmp_path):
    args = serve.parse_args(["--model", str(export_dir)])
    assert args.host == "127.0.0.1" and args.port == 8000
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(UserError, match="cannot listen on 127.0.0.1"):
            serve.check_port_free("127.0.0.1", taken.getsockname()[1])
    with pytest.raises(UserError, match="deploy.export"):
        serve.create_app(tmp_path)


# ---------------------------------------------------------------- the page in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(export_dir, tmp_path):
    """``python -m deploy.serve`` on a free port of 127.0.0.1, stopped at the end of the test."""
    port = free_port()
    log = open(tmp_path / "server.log", "w+")
    process = subprocess.Popen([sys.executable, "-m", "deploy.serve", "--model", str(export_dir), "--port", str(port),
                                "--max-upload-mb", "0.05"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/info", timeout=2) as response:
                    assert json.load(response)["class_names"] == list(CLASSES)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"deploy.serve did not start: {log.read()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.seek(0)
        text = log.read()
        log.close()
    assert f"http://127.0.0.1:{port}/" in text


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
def test_the_page_in_headless_chromium(server, export_dir, tmp_path, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.setenv("SE_OFFLINE", "true")  # Debian's driver and browser are named: Selenium Manager fetches nothing
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(server + "/")
        assert "classifier" in driver.title
        path = image_file(export_dir)
        driver.find_element(By.ID, "image").send_keys(str(path))
        driver.find_element(By.ID, "submit").click()
        table = wait.until(expected_conditions.presence_of_element_located((By.ID, "predictions")))
        rows = [row.find_elements(By.TAG_NAME, "td") for row in table.find_elements(By.TAG_NAME, "tr")[1:]]
        shown = [(cells[0].text, float(cells[1].text)) for cells in rows]
        expected = keras_probabilities(export_dir, path)
        best = np.argsort(-expected)[:len(shown)]
        assert [label for label, _ in shown] == [CLASSES[i] for i in best] and len(shown) == 3
        assert np.allclose([p for _, p in shown], expected[best], atol=1e-4)
        image = driver.find_element(By.ID, "uploaded")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) == 48
        assert driver.find_element(By.ID, "file").text == path.name

        # a text file: the page says why, and the next upload works again
        text_file = tmp_path / "notes.txt"
        text_file.write_text("not a picture")
        driver.find_element(By.ID, "image").send_keys(str(text_file))
        driver.find_element(By.ID, "submit").click()
        error = wait.until(expected_conditions.presence_of_element_located((By.ID, "error")))
        assert "not an image" in error.text and not driver.find_elements(By.ID, "predictions")
        driver.find_element(By.ID, "image").send_keys(str(image_file(export_dir, 1)))
        driver.find_element(By.ID, "submit").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "predictions")))
        assert driver.find_element(By.ID, "file").text == image_file(export_dir, 1).name
    finally:
        driver.quit()
