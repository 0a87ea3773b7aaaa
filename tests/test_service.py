"""The reading service: its API through FastAPI's TestClient, and its demo page in headless Chromium."""

import base64
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from fastapi.testclient import TestClient
from helpers import bomb_png, free_port

import predict_example
from captcha_reader import service
from captcha_reader.base import SettingError
from captcha_reader.decoding import TextFormat
from captcha_reader.lite import load_lite_reader
from captcha_reader.reading import BASE_CHARSET, BaseReader
from captcha_reader.service import ServiceSettings, create_app

CHROMIUM = "/usr/bin/chromium"


class GatedReader(BaseReader):
    """Another reader, except that each batch waits for the test to open the gate; it records batch sizes."""

    def __init__(self, inner: BaseReader) -> None:
        super().__init__(inner.spec, inner.validation, inner.format_version)
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.sizes: list[int] = []

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """The inner reader's logits, once the gate is open."""
        self.sizes.append(len(batch))
        self.entered.set()
        assert self.gate.wait(60)
        return self.inner.logits(batch)


@pytest.fixture(scope="module")
def onnx_reader(lite_model):
    """The tiny model's ONNX export, opened."""
    return load_lite_reader(lite_model)


@pytest.fixture(scope="module")
def images(tiny_data) -> list[Path]:
    """Three captchas of the tiny data set."""
    return sorted(tiny_data.iterdir())[:3]


def files_of(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Multipart files for TestClient, in order."""
    return [("images", (path.name, path.read_bytes(), "image/png")) for path in paths]


def expected(reader: BaseReader, paths: list[Path], **read_options: object) -> list[dict]:
    """What the service must answer for good images: the reader's own readings, with read()'s format options."""
    return [{"text": r.text, "confidence": round(float(r.confidence), 6),
             "char_confidences": [round(float(c), 6) for c in r.char_confidences]}
            for r in reader.read(paths, **read_options)]


def wait_until(condition, seconds: float = 30.0) -> None:
    """Poll until `condition()` holds, or fail."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_multipart_and_base64_answer_each_image_in_order(onnx_reader, images):
    with TestClient(create_app(onnx_reader)) as client:
        by_files = client.post("/read", files=files_of(images))
        encoded = [base64.b64encode(p.read_bytes()).decode() for p in images]
        encoded[1] = "data:image/png;base64," + encoded[1]
        by_json = client.post("/read", json={"images": encoded})
    want = expected(onnx_reader, images)
    assert by_files.status_code == 200 and by_files.json() == {"results": want}
    assert by_json.status_code == 200 and by_json.json() == {"results": want}


def test_a_bad_image_gets_its_own_error(onnx_reader, images):
    files = files_of(images[:1]) + [("images", ("notes.txt", b"not an image", "text/plain")),
                                    ("images", ("bomb.png", bomb_png(), "image/png")),
                                    ("images", ("empty.png", b"", "image/png"))]
    with TestClient(create_app(onnx_reader)) as client:
        answer = client.post("/read", files=files)
        json_answer = client.post("/read", json={"images": ["***", 7]})
        alone = client.post("/read", files=files[1:2])
        assert client.get("/health").json()["status"] == "ok"
    results = answer.json()["results"]
    assert answer.status_code == 200 and results[0] == expected(onnx_reader, images[:1])[0]
    assert results[1] == {"error": "notes.txt: not a readable image (not PNG, JPEG, GIF, BMP or WEBP)"}
    assert results[2]["error"].startswith("bomb.png: image too large")
    assert results[3] == {"error": "empty.png: empty file"}
    assert json_answer.status_code == 422
    assert json_answer.json()["results"] == [{"error": "image 1: not valid base64"},
                                             {"error": "image 2: expected a base64 string, got int"}]
    assert alone.status_code == 422 and alone.json()["error"] == results[1]["error"]


@pytest.mark.parametrize("request_args, status, message", [
    ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "multipart/form-data"),
    ({"content": b"{oops", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"json": {"pictures": []}}, 422, '{"images": [base64, ...]}'),
    ({"json": {"images": []}}, 422, "no images"),
    ({"content": b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--b--\r\n',
      "headers": {"content-type": "multipart/form-data; boundary=b"}}, 422, "no images"),
    ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}}, 400, "boundary"),
])
def test_malformed_requests_get_a_json_4xx(onnx_reader, request_args, status, message):
    with TestClient(create_app(onnx_reader)) as client:
        answer = client.post("/read", **request_args)
    assert answer.status_code == status
    assert message in answer.json()["error"]


def test_limits_on_body_images_and_pixels(onnx_reader, images):
    settings = ServiceSettings(max_body_bytes=20_000, max_images=2, max_pixels=100 * 40)
    big = [("images", ("big.png", bytes(30_000), "image/png"))]
    with TestClient(create_app(onnx_reader, settings)) as client:
        declared = client.post("/read", files=big)
        streamed = client.post("/read", content=iter([bytes(15_000)] * 2),
                               headers={"content-type": "application/json"})
        too_many_files = client.post("/read", files=files_of(images))
        too_many_json = client.post("/read", json={"images": ["AA=="] * 3})
        too_wide = client.post("/read", files=files_of(images[:1]))
    for answer in (declared, streamed):
        assert answer.status_code == 413 and "request body too large (limit 20,000 bytes)" in answer.json()["error"]
    assert too_many_files.status_code == 400 and "Too many files" in too_many_files.json()["error"]
    assert too_many_json.status_code == 413 and "too many images: 3 (limit 2" in too_many_json.json()["error"]
    assert too_wide.status_code == 422 and "limit 4,000" in too_wide.json()["error"]


def test_settings_refuse_unusable_limits():
    with pytest.raises(SettingError, match="max_batch: must be positive"):
        ServiceSettings(max_batch=0)
    with pytest.raises(SettingError, match="token"):
        ServiceSettings(token="")
    with pytest.raises(SettingError, match=r"max_queue: must hold one request's images \(max_images 64\), got 8"):
        ServiceSettings(max_queue=8)  # a request of 9 to 64 images would be refused 503 for ever


@pytest.mark.parametrize("flags, message", [(["--max-batch", "0"], "--max-batch: must be positive, got 0"),
                                            (["--max-images", "9", "--max-queue", "8"], "--max-queue: must hold"),
                                            (["--token", ""], "--token: must not be empty")])
def test_a_limit_no_service_can_run_with_is_a_one_line_flag_error(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        service.parse_args(flags)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.splitlines()) == 1


def test_token_guards_read_and_model_not_health(onnx_reader, images):
    with TestClient(create_app(onnx_reader, ServiceSettings(token="s3cret"))) as client:
        missing = client.post("/read", files=files_of(images[:1]))
        wrong = client.get("/model", headers={"Authorization": "Bearer nope"})
        right = client.post("/read", files=files_of(images[:1]), headers={"Authorization": "Bearer s3cret"})
        health = client.get("/health")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401 and "token" in wrong.json()["error"]
    assert right.status_code == 200 and right.json()["results"] == expected(onnx_reader, images[:1])
    assert health.status_code == 200 and health.json()["token_required"] is True


def test_model_health_page_and_docs(onnx_reader, reader):
    with TestClient(create_app(onnx_reader)) as client:
        model = client.get("/model").json()
        health = client.get("/health").json()
        page = client.get("/")
        script = client.get("/static/app.js")
        docs = client.get("/docs")
        docs_script = client.get("/static-offline-docs/swagger-ui-bundle.js")
        schema = client.get("/openapi.json").json()
    assert model == reader.info()
    assert health["status"] == "ok" and health["token_required"] is False
    assert page.status_code == 200 and 'src="/static/app.js"' in page.text and "//" not in page.text.split("<body")[0]
    assert script.status_code == 200 and "/read" in script.text
    assert docs.status_code == 200 and "/static-offline-docs/swagger-ui-bundle.js" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text, "the docs page loads nothing from a CDN"
    assert docs_script.status_code == 200 and len(docs_script.content) > 100_000
    assert set(schema["paths"]["/read"]["post"]["requestBody"]["content"]) == {"multipart/form-data", "application/json"}


def test_concurrent_requests_are_read_in_one_batch(onnx_reader, images):
    gated = GatedReader(onnx_reader)
    app = create_app(gated, ServiceSettings(max_wait_ms=0))
    with TestClient(app) as client, ThreadPoolExecutor(8) as pool:
        first = pool.submit(client.post, "/read", files=files_of(images[:1]))
        assert gated.entered.wait(60)  # the first image is in the network, held at the gate
        rest = [pool.submit(client.post, "/read", files=files_of([images[i % 3]])) for i in range(6)]
        wait_until(lambda: len(app.state.batcher.pending) == 6)
        gated.gate.set()
        answers = [first.result()] + [future.result() for future in rest]
        health = client.get("/health").json()
    assert gated.sizes == [1, 6]
    assert health["batches"] == 2 and health["largest_batch"] == 6 and health["images_read"] == 7
    want = expected(onnx_reader, images)
    assert [a.json()["results"][0] for a in answers] == [want[0]] + [want[i % 3] for i in range(6)]


def test_the_query_chooses_the_text_format_of_each_request(onnx_reader, images):
    gated = GatedReader(onnx_reader)
    app = create_app(gated, ServiceSettings(max_wait_ms=0))
    queries = ["", "?length=2-3", "?charset=0123&length=4", "?greedy=true"]
    with TestClient(app) as client, ThreadPoolExecutor(8) as pool:
        first = pool.submit(client.post, "/read", files=files_of(images[:1]))
        assert gated.entered.wait(60)
        asked = [pool.submit(client.post, f"/read{query}", files=files_of(images)) for query in queries]
        wait_until(lambda: len(app.state.batcher.pending) == 3 * len(queries))
        gated.gate.set()
        answers = [future.result() for future in asked]
        assert first.result().status_code == 200
    assert gated.sizes == [1, 3 * len(queries)], "requests of different formats share one batch"
    formats = [{}, {"text_format": TextFormat.parse(None, "2-3")}, {"text_format": TextFormat.parse("0123", "4")},
               {"greedy": True}]
    for query, answer, read_options in zip(queries, answers, formats):
        assert answer.status_code == 200, query
        assert answer.json()["results"] == expected(onnx_reader, images, **read_options), query
    assert all(2 <= len(r["text"]) <= 3 for r in answers[1].json()["results"])
    assert all(set(r["text"]) <= set("0123") and len(r["text"]) == 4 for r in answers[2].json()["results"])


@pytest.mark.parametrize("query, message", [
    ("?length=99", "length 99 needs 99 CTC time steps"),
    ("?length=4-2", "1 <= min <= max"),
    ("?charset=xyz", "the model reads only"),
    ("?greedy=true&length=4", "cannot be combined"),
    ("?greedy=maybe", "valid boolean"),
    ("?Length=3", "Length: Extra inputs are not permitted"),
])
def test_a_text_format_the_model_cannot_read_is_refused_before_reading(onnx_reader, images, query, message):
    with TestClient(create_app(onnx_reader)) as client:
        answer = client.post(f"/read{query}", files=files_of(images[:1]))
        health = client.get("/health").json()
    assert answer.status_code == 422 and message in answer.json()["error"]
    assert health["images_read"] == 0


def test_full_queue_answers_503_with_retry_after(onnx_reader, images):
    gated = GatedReader(onnx_reader)
    settings = ServiceSettings(max_queue=2, max_images=2)
    with TestClient(create_app(gated, settings)) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/read", files=files_of(images[:2]))
        assert gated.entered.wait(60)
        refused = client.post("/read", files=files_of(images[:1]))
        gated.gate.set()
        assert first.result().status_code == 200
        after = client.post("/read", files=files_of(images[:1]))
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "queue" in refused.json()["error"]
    assert after.status_code == 200


def test_serve_flag_reports_a_missing_model_in_one_line(tmp_path, capsys):
    assert predict_example.main(["--serve", "--model", str(tmp_path / "none.onnx")]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_a_missing_export_of_a_trained_model_says_how_to_export_it(trained_model, tmp_path, capsys):
    shutil.copy(trained_model, tmp_path / "mine.keras")
    assert predict_example.main(["--serve", "--model", str(tmp_path / "mine.onnx")]) == 1
    error = capsys.readouterr().err
    assert f"--export-lite {tmp_path / 'mine.onnx'} --model {tmp_path / 'mine.keras'}" in error
    assert len(error.splitlines()) == 1


def test_module_entry_point_serves_and_stops_on_sigterm(lite_model):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "captcha_reader.service", "--model", str(lite_model),
                               "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the service did not answer within 60 s"
                time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    assert "Application shutdown complete" in server.stdout.read()


def test_service_on_onnx_never_imports_tensorflow(lite_model):
    code = ("import sys; from captcha_reader.service import create_app; from captcha_reader import open_reader;"
            "create_app(open_reader(sys.argv[1])); assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code, str(lite_model)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_demo_page_reads_test_png_in_chromium(lite_model, onnx_reader, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: browser test skipped")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser at {CHROMIUM}: browser test skipped")
    port = free_port()
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, "predict_example.py", "--serve", "--model", str(lite_model),
                                   "--port", str(port)], cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_until(lambda: server.poll() is not None or health_ok(port))
        assert server.poll() is None, (tmp_path / "server.log").read_text()
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#file-input", str(ROOT / "test.png"))
            card = page.locator("#results .result").first
            card.wait_for(timeout=30_000)
            want = onnx_reader.read([ROOT / "test.png"])[0]
            assert card.get_attribute("data-text") == want.text
            assert f"{100 * want.confidence:.1f}%" in card.inner_text()
            characters = card.locator(".text span")
            assert characters.all_inner_texts() == list(want.text)
            for i, sure in enumerate(want.char_confidences):
                assert characters.nth(i).get_attribute("title") == f"{100 * sure:.1f}% sure"
                assert (characters.nth(i).get_attribute("class") == "doubtful") == (sure < 0.9)
            assert "test.png" in card.inner_text()
            page.goto(f"http://127.0.0.1:{port}/docs")  # the OpenAPI page renders from the app's own files
            page.locator(".opblock-summary-path", has_text="/read").first.wait_for(timeout=30_000)
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        # uvicorn finishes the requests in flight, shuts the app down, then re-raises SIGTERM for the exit status.
        assert server.wait(60) == -signal.SIGTERM
    assert "Application shutdown complete" in (tmp_path / "server.log").read_text()


def health_ok(port: int) -> bool:
    """True once the service on `port` answers its health probe."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_a_lone_request_does_not_wait_for_a_batch(onnx_reader, images):
    with TestClient(create_app(onnx_reader, ServiceSettings(max_wait_ms=120_000))) as client:
        started = time.monotonic()
        answer = client.post("/read", files=files_of(images[:1]))
    assert answer.status_code == 200
    assert time.monotonic() - started < 60  # nothing else was being decoded: no reason to wait the 120 s


def test_a_public_address_without_a_token_warns(lite_model, monkeypatch, capsys):
    monkeypatch.setattr(service.uvicorn, "run", lambda app, **options: None)  # no server: only the checks before it
    monkeypatch.delenv(service.TOKEN_ENV, raising=False)
    assert service.main(["--model", str(lite_model), "--host", "0.0.0.0"]) == 0
    assert "warning: serving on 0.0.0.0 without a token" in capsys.readouterr().err
    assert service.main(["--model", str(lite_model)]) == 0
    monkeypatch.setenv(service.TOKEN_ENV, "from-the-environment")
    assert service.main(["--model", str(lite_model), "--host", "0.0.0.0"]) == 0
    assert capsys.readouterr().err == ""


def test_the_service_takes_base_for_the_shipped_base_model(monkeypatch):
    served = {}
    monkeypatch.setattr(service.uvicorn, "run", lambda app, **options: served.update(app=app))  # only what runs before
    assert service.main(["--model", "base", "--port", str(free_port())]) == 0
    with TestClient(served["app"]) as client:
        assert client.get("/model").json()["charset"] == BASE_CHARSET


def test_a_port_in_use_stops_the_service_and_the_labelling_page_in_one_line(tmp_path, lite_model):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        commands = [[sys.executable, "predict_example.py", "--serve", "--model", str(lite_model), "--port", port],
                    [sys.executable, "ocr_captcha.py", "--label", str(folder), "--port", port]]
        for command in commands:
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
            assert result.returncode == 1, result.stderr[-2000:]
            assert result.stderr.strip().splitlines() == [
                f"error: cannot listen on 127.0.0.1:{port} (Address already in use): is another server running? "
                "pick another --port"]
        missing = subprocess.run([sys.executable, "predict_example.py", "--serve", "--model",
                                  str(tmp_path / "none.onnx"), "--port", port],
                                 cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert list(folder.iterdir()) == []  # checked before the folder's labels.csv is written
    assert missing.returncode == 1 and "none.onnx: no such model" in missing.stderr, "the model first, then the port"
