"""The photo-search web service: its API on bad and good input, and the page in a browser."""

import base64
import io
import shutil
import socket
import sys
import threading
import time

import pytest
from PIL import Image

from cmp_tf.serving import web_api


def _png(color="white", size=40, mode="RGB", fmt="PNG"):
  buffer = io.BytesIO()
  Image.new(mode, (size, size), color).save(buffer, fmt)
  return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture(scope="module")
def service(exported_run, tmp_path_factory):
  run_dir, _ = exported_run
  index_dir = tmp_path_factory.mktemp("web_index")
  shutil.rmtree(index_dir)  # missing: the service builds it on start
  return web_api.SearchService(run_dir, index_dir=str(index_dir), progress=False)


@pytest.fixture(scope="module")
def client(service):
  from fastapi.testclient import TestClient
  return TestClient(web_api.create_app(service, max_body_bytes=64 * 1024))


def test_the_service_loads_the_exports_and_builds_the_missing_index(service, client):
  health = client.get("/api/health").json()
  assert health["status"] == "ok" and health["backend"].startswith("exported SavedModels")
  assert health["index"]["size"] == len(service.index) > 0
  words = client.get("/api/vocabulary").json()["words"]
  assert "sky" in words and words == sorted(words)
  page = client.get("/")
  assert page.status_code == 200 and 'id="sketch-canvas"' in page.text


def _layout(*words):
  return [{"word": w, "x": 0.2 + 0.2 * i, "y": 0.5} for i, w in enumerate(words)]


# (body or raw bytes, headers, status, start of the message)
BAD_REQUESTS = [
    ({"modality": "ldr", "image": "not base64!"}, None, 400, "image: not valid base64"),
    ({"modality": "ldr", "image": base64.b64encode(b"GIF89a....").decode()}, None, 400,
     "image: not an image that can be decoded"),
    ({"modality": "clp", "image": ""}, None, 400, "image: expected a base64-encoded"),
    ({"modality": "nat"}, None, 400, "image: required for modality nat"),
    ({"modality": "ldr", "image": _png(fmt="BMP")}, None, 400, "image: expected PNG or JPEG"),
    ({"modality": "dsc", "text": "   \n "}, None, 400, "text: expected a description"),
    ({"modality": "dsc"}, None, 400, "text: expected a description"),
    ({"modality": "spt", "layout": _layout("qwertyuiop")}, None, 400,
     "layout: no word the network saw drawn"),
    ({"modality": "spt", "layout": [{"word": "sky", "x": 1.5, "y": 0.1}]}, None, 400,
     "layout[0].x: expected a number in [0, 1]"),
    ({"modality": "spt", "layout": [{"word": "sky", "x": 0.5}]}, None, 400, "layout[0].y:"),
    ({"modality": "spt", "layout": []}, None, 400, "layout: expected a non-empty list"),
    ({"modality": "dsc", "text": "A beach.", "k": 0}, None, 400, "k: must be in [1, "),
    ({"modality": "dsc", "text": "A beach.", "k": 10 ** 6}, None, 400, "k: must be in [1, "),
    ({"modality": "dsc", "text": "A beach.", "k": "5"}, None, 400, "k: expected an integer"),
    ({"modality": "xyz", "text": "A beach."}, None, 400, "modality: expected one of"),
    ({"modality": "dsc", "text": "A beach.", "query": 1}, None, 400, "query: unknown field"),
    ([1, 2], None, 400, "body: expected a JSON object"),
    (b"{not json", {"content-type": "application/json"}, 400, "body: not valid JSON"),
    (b"text=beach", {"content-type": "application/x-www-form-urlencoded"}, 415,
     "content-type: expected application/json"),
    ({"modality": "ldr", "image": "A" * (80 * 1024)}, None, 413, "body: "),
]


def _send(client, body, headers):
  if isinstance(body, bytes):
    return client.post("/api/search", content=body, headers=headers)
  return client.post("/api/search", json=body)


def test_bad_requests_are_answered_4xx_naming_the_field_and_the_server_keeps_serving(client):
  for body, headers, status, message in BAD_REQUESTS:
    response = _send(client, body, headers)
    assert response.status_code == status, (body if not isinstance(body, dict) else
                                            {k: str(v)[:40] for k, v in body.items()},
                                            response.text)
    assert response.json()["error"].startswith(message), response.json()
  for path in ("/api/thumbnails/not-an-id", "/api/thumbnails/../../../etc/passwd",
               "/api/thumbnails/%2e%2e%2fmanifest.json"):
    assert client.get(path).status_code == 404, path
  good = client.post("/api/search", json={"modality": "ldr", "image": _png(), "k": 5})
  assert good.status_code == 200, good.text
  answer = good.json()
  assert len(answer["results"]) == 5 and 0 <= answer["probability"] <= 1
  assert answer["latency_ms"] > 0 and answer["predicted_category"]
  thumb = client.get(answer["results"][0]["thumbnail"])
  assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"


def test_every_query_kind_returns_ranked_photos(client):
  bodies = [{"modality": "ldr", "image": _png("white")},
            {"modality": "clp", "image": _png("orange", mode="RGBA")},
            {"modality": "nat", "image": _png("green", fmt="JPEG")},
            {"modality": "spt", "layout": _layout("sky", "sea", "qwertyuiop")},
            {"modality": "dsc", "text": "I love to hike in the woods. Birds were singing."}]
  for body in bodies:
    answer = client.post("/api/search", json={**body, "k": 3}).json()
    scores = [r["score"] for r in answer["results"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True), answer
  spt = client.post("/api/search", json={"modality": "spt", "layout": _layout(
      "sky", "qwertyuiop")}).json()
  assert spt["ignored_words"] == ["qwertyuiop"] and spt["rendered"].startswith("data:image/png")
  rendered = client.post("/api/render_layout", json={"layout": _layout("sky", "tree")}).json()
  assert rendered["unknown_words"] == [] and rendered["rendered"].startswith("data:image/png")


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromedriver") is None,
                    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_the_page_in_headless_chromium_runs_a_sketch_a_layout_and_a_sentence(service,
                                                                            tmp_path):
  import uvicorn

  from tests.serving import web_browser

  port = _free_port()
  server = uvicorn.Server(uvicorn.Config(web_api.create_app(service), host="127.0.0.1",
                                         port=port, log_level="warning"))
  thread = threading.Thread(target=server.run, daemon=True)
  thread.start()
  try:
    while not server.started:
      assert thread.is_alive(), "the web server stopped before it started serving"
      time.sleep(0.1)
    screenshot = tmp_path / "web.png"
    result = web_browser.drive(f"http://127.0.0.1:{port}/", screenshot=screenshot)
    for kind in ("sketch", "layout", "text"):
      status, captions = result[kind]
      assert len(captions) == min(18, len(service.index)), (kind, status)
    assert result["layout"][0].startswith("SPT query") and result["text"][0].startswith("DSC")
    with Image.open(screenshot) as image:
      assert image.size[0] >= 1000
  finally:
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_the_latency_benchmark_at_its_smallest(exported_run, tmp_path):
  from cmp_tf import paths
  if str(paths.REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(paths.REPO_ROOT))
  from benchmarks import web
  results = web.run_benchmark(run_dir=exported_run[0], photos_per_category=2, queries=3,
                              workdir=str(tmp_path), log=lambda *a, **k: None)
  assert set(results["modalities"]) == {"nat", "clp", "spt", "ldr", "dsc"}
  assert all(m["queries"] == 3 and m["p50_ms"] > 0 for m in results["modalities"].values())
  assert results["index_size"] == 60
