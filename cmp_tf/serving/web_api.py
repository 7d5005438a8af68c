"""The photo-search web service: one page and a JSON API over a run's exported models.

  POST /api/search          {"modality": "ldr"|"clp"|"nat", "image": "<base64 PNG/JPEG>", "k": 12}
                            {"modality": "spt", "layout": [{"word": "sky", "x": 0.5, "y": 0.1}]}
                            {"modality": "dsc", "text": "..."}
     -> {"results": [{"id", "category", "score", "thumbnail"}], "predicted_category",
         "probability", "latency_ms", "modality"} (SPT also "rendered": the layout as the
         SPT renderer drew it, "ignored_words": words the network never saw drawn)
  POST /api/render_layout   {"layout": [...]} -> {"rendered", "unknown_words"}
  GET  /api/health          the run, the index, the backend, the start-up time
  GET  /api/vocabulary      the words the SPT training images were drawn with
  GET  /api/thumbnails/{id} a photo of the index (PNG); 404 for an id not in it

The models and the index are loaded once, when the service starts. Every bad request is
answered 4xx with {"error": "<field>: <what is wrong>"}; no client value ever reaches the
file system (thumbnails are looked up by id in the loaded index).
"""

import base64
import binascii
import io
import json
import math
import os
import time
from importlib import resources

from PIL import Image, UnidentifiedImageError

from cmp_tf import finished_run
from cmp_tf import modalities as mod_lib
from cmp_tf.serving import embedders, queries, search
from cmp_tf.serving import index as index_lib
from cmp_tf.text.split import split_sentences

IMAGE_MODALITIES = (mod_lib.LDR, mod_lib.CLP, mod_lib.NAT)
MAX_K = 100
MAX_TEXT_CHARS = 20000
MAX_LAYOUT_ITEMS = 64
DEFAULT_MAX_BODY_BYTES = 4 << 20
RENDER_SIZE = 256


class RequestError(ValueError):
  """A bad request: `status` (400, 404, 413, 415) and a message naming the field."""

  def __init__(self, message, status=400):
    super().__init__(message)
    self.status = status


def _decode_image(value, field="image"):
  """base64 (optionally a data: URL) -> image bytes PIL can read; RequestError otherwise."""
  if not isinstance(value, str) or not value.strip():
    raise RequestError(f"{field}: expected a base64-encoded PNG or JPEG, got "
                       f"{'an empty string' if isinstance(value, str) else type(value).__name__}")
  if value.startswith("data:"):
    value = value.partition(",")[2]
  try:
    encoded = base64.b64decode(value, validate=True)
  except (binascii.Error, ValueError):
    raise RequestError(f"{field}: not valid base64") from None
  if not encoded:
    raise RequestError(f"{field}: the image is empty (0 bytes)")
  try:
    with Image.open(io.BytesIO(encoded)) as image:
      image.load()
      width, height = image.size
      kind = image.format
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
          Image.DecompressionBombError) as e:
    raise RequestError(f"{field}: not an image that can be decoded ({e})") from None
  if kind not in ("PNG", "JPEG"):
    raise RequestError(f"{field}: expected PNG or JPEG, got {kind}")
  if width < 1 or height < 1:
    raise RequestError(f"{field}: the image has no pixels ({width}x{height})")
  return encoded


def parse_layout(layout, vocabulary, field="layout"):
  """([(word, x, y)] of the known words, [unknown words]); RequestError naming the item."""
  if not isinstance(layout, list) or not layout:
    raise RequestError(f"{field}: expected a non-empty list of {{\"word\", \"x\", \"y\"}}")
  if len(layout) > MAX_LAYOUT_ITEMS:
    raise RequestError(f"{field}: at most {MAX_LAYOUT_ITEMS} words, got {len(layout)}")
  items, unknown = [], []
  for i, item in enumerate(layout):
    where = f"{field}[{i}]"
    if not isinstance(item, dict):
      raise RequestError(f"{where}: expected {{\"word\", \"x\", \"y\"}}")
    word = item.get("word")
    if not isinstance(word, str) or not word.strip():
      raise RequestError(f"{where}.word: expected a non-empty string")
    word = " ".join(word.replace("_", " ").split()).lower()
    for axis in ("x", "y"):
      value = item.get(axis)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
          math.isfinite(value) and 0.0 <= value <= 1.0):
        raise RequestError(f"{where}.{axis}: expected a number in [0, 1] (a fraction of the "
                           f"{'width' if axis == 'x' else 'height'} from the top left), got "
                           f"{value!r}")
    if vocabulary is not None and word not in vocabulary:
      unknown.append(word)
    else:
      items.append((word, float(item["x"]), float(item["y"])))
  if not items:
    raise RequestError(f"{field}: no word the network saw drawn (unknown: "
                       f"{', '.join(dict.fromkeys(unknown))}); see GET /api/vocabulary")
  return items, list(dict.fromkeys(unknown))


def parse_k(value, index_size):
  k = 12 if value is None else value
  if isinstance(k, bool) or not isinstance(k, int):
    raise RequestError(f"k: expected an integer, got {value!r}")
  top = min(MAX_K, index_size)
  if not 1 <= k <= top:
    raise RequestError(f"k: must be in [1, {top}], got {k}")
  return k


def _png_data_url(png):
  return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class SearchService:
  """A finished run's embedder (its exports when current) and photo index, loaded once."""

  def __init__(self, run_dir, *, index_dir=None, data_dir=None, backend=embedders.AUTO,
               progress=True):
    started = time.perf_counter()
    self.run = finished_run.load_run(run_dir, data_dir=data_dir)
    self.index_dir = index_dir or search.default_index_dir(self.run.run_dir)
    if not os.path.isfile(os.path.join(self.index_dir, index_lib.INDEX_JSON)):
      if progress:
        print(f"no photo index in {self.index_dir}; building it", flush=True)
      search.build_search_index(self.run.run_dir, index_dir=self.index_dir, data_dir=data_dir,
                                backend=backend, progress=progress)
    self.index = index_lib.PhotoIndex.load(self.index_dir)
    if self.index.meta.get("fingerprint") != self.run.weights_digest:
      raise ValueError(f"--index: the index in {self.index_dir} was built from other weights "
                       "than the run's; rebuild it with python -m cmp_tf.search build "
                       f"--run_dir={self.run.run_dir}")
    self.positions = {photo_id: i for i, photo_id in enumerate(self.index.ids)}
    self.modalities = [m for m in mod_lib.ALL_MODALITIES if m in self.run.modalities]
    self.embedder, self.backend = embedders.make_embedder(self.run, self.modalities, backend)
    vocabulary = queries.spatial_text_vocabulary(self.run.manifest)
    self.vocabulary = set(vocabulary) if vocabulary is not None else None
    self.vocabulary_list = vocabulary or []
    self.image_size = int(self.run.manifest["image_size"])
    self._warm_up()
    self.startup_s = round(time.perf_counter() - started, 2)

  def _warm_up(self):
    """One query per branch, so the first user's query does not pay for tracing."""
    blank = io.BytesIO()
    Image.new("RGB", (self.image_size, self.image_size), "white").save(blank, "PNG")
    for modality in self.modalities:
      if modality == mod_lib.DSC:
        self.embedder.texts(["A quiet place."])
      else:
        self.embedder.images(modality, [blank.getvalue()])

  def health(self):
    return {"status": "ok", "run_dir": self.run.run_dir, "method": self.run.state.get(
                "method_name"), "modalities": self.modalities, "backend": self.backend,
            "index": {"dir": self.index_dir, "size": len(self.index),
                      "source": self.index.meta.get("source")},
            "categories": len(self.run.categories), "startup_s": self.startup_s}

  def render_layout(self, body):
    from cmp_tf.data.synthcmp import render_spatial_text
    items, unknown = parse_layout(body.get("layout"), self.vocabulary)
    return items, unknown, render_spatial_text(items, RENDER_SIZE)

  def search(self, body):
    """The answer to one POST /api/search body (a dict); RequestError on bad input."""
    started = time.perf_counter()
    if not isinstance(body, dict):
      raise RequestError("body: expected a JSON object")
    modality = body.get("modality")
    if modality not in self.modalities:
      raise RequestError(f"modality: expected one of {', '.join(self.modalities)}, got "
                         f"{modality!r}")
    known = {"modality", "k", "image", "layout", "text"}
    extra = sorted(set(body) - known)
    if extra:
      raise RequestError(f"{extra[0]}: unknown field (expected some of {', '.join(sorted(known))})")
    k = parse_k(body.get("k"), len(self.index))
    answer = {"modality": modality}
    if modality == mod_lib.DSC:
      text = body.get("text")
      if not isinstance(text, str) or not split_sentences(text):
        raise RequestError("text: expected a description with at least one sentence (it is "
                           "missing, empty or has no letter or digit)")
      if len(text) > MAX_TEXT_CHARS:
        raise RequestError(f"text: at most {MAX_TEXT_CHARS} characters, got {len(text)}")
      outputs = self.embedder.texts([text])
    elif modality == mod_lib.SPT:
      from cmp_tf.data.synthcmp import render_spatial_text
      items, unknown = parse_layout(body.get("layout"), self.vocabulary)
      outputs = self.embedder.images(modality, [render_spatial_text(items, self.image_size)])
      answer.update(rendered=_png_data_url(render_spatial_text(items, RENDER_SIZE)),
                    ignored_words=unknown)
    else:
      if "image" not in body:
        raise RequestError(f"image: required for modality {modality}")
      outputs = self.embedder.images(modality, [_decode_image(body["image"])])
    hits = self.index.hits(outputs["embedding"], k)
    answer.update(
        results=[{"id": h["id"], "category": h["category"], "score": round(h["score"], 4),
                  "thumbnail": f"/api/thumbnails/{h['id']}"} for h in hits],
        predicted_category=outputs["category"][0],
        probability=round(float(outputs["probabilities"][0].max()), 4),
        latency_ms=round(1000 * (time.perf_counter() - started), 1))
    return answer

  def thumbnail(self, photo_id):
    position = self.positions.get(photo_id)
    if position is None:
      raise RequestError(f"id: no photo {photo_id!r} in the index", status=404)
    return self.index.thumbnails[position]


def page_html():
  """The single page (no build step): sketch, word layout, description, upload, results."""
  return resources.files("cmp_tf.serving").joinpath("static/index.html").read_text("utf-8")


def create_app(service, *, max_body_bytes=DEFAULT_MAX_BODY_BYTES):
  """The FastAPI application over a loaded SearchService."""
  from fastapi import FastAPI, Request
  from fastapi.responses import HTMLResponse, JSONResponse, Response

  app = FastAPI(title="cmp_tf photo search", docs_url="/api/docs", redoc_url=None)
  html = page_html()

  def error(e):
    return JSONResponse({"error": str(e)}, status_code=e.status)

  async def json_body(request):
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
      raise RequestError(f"content-type: expected application/json, got "
                         f"{content_type or 'none'}", status=415)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
      raise RequestError(f"body: {declared} bytes, over the limit of {max_body_bytes}",
                         status=413)
    body = b""
    async for chunk in request.stream():
      body += chunk
      if len(body) > max_body_bytes:
        raise RequestError(f"body: over the limit of {max_body_bytes} bytes", status=413)
    try:
      return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise RequestError(f"body: not valid JSON ({e})") from None

  @app.get("/", response_class=HTMLResponse)
  def page():
    return html

  @app.get("/api/health")
  def health():
    return service.health()

  @app.get("/api/vocabulary")
  def vocabulary():
    return {"words": service.vocabulary_list, "any_word": service.vocabulary is None}

  @app.post("/api/search")
  async def search_route(request: Request):
    try:
      body = await json_body(request)
      from starlette.concurrency import run_in_threadpool
      return await run_in_threadpool(service.search, body)
    except RequestError as e:
      return error(e)

  @app.post("/api/render_layout")
  async def render_route(request: Request):
    try:
      body = await json_body(request)
      if not isinstance(body, dict):
        raise RequestError("body: expected a JSON object")
      _, unknown, png = service.render_layout(body)
      return {"rendered": _png_data_url(png), "unknown_words": unknown}
    except RequestError as e:
      return error(e)

  @app.get("/api/thumbnails/{photo_id:path}")
  def thumbnail(photo_id: str):
    try:
      return Response(service.thumbnail(photo_id), media_type="image/png",
                      headers={"Cache-Control": "max-age=3600"})
    except RequestError as e:
      return error(e)

  return app
