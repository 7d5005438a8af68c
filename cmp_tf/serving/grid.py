"""Result sheets: the query, then the top hits with rank, score and category, as one PNG."""

import io
import textwrap

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
QUERY_FRAME = (200, 40, 40)
MATCH_FRAME = (40, 150, 60)


def _font(size):
  return ImageFont.load_default(size=size)


def image_tile(encoded, size):
  """An encoded image fitted (aspect kept) into a size x size RGB tile."""
  with Image.open(io.BytesIO(encoded)) as image:
    image = image.convert("RGB")
    scale = size / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.LANCZOS)
  tile = Image.new("RGB", (size, size), BACKGROUND)
  tile.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
  return tile


def text_tile(text, size):
  """A tile showing (the start of) a text query."""
  tile = Image.new("RGB", (size, size), (245, 245, 235))
  font_px = max(9, size // 11)
  width = max(8, int(size / (0.55 * font_px)))
  lines = textwrap.wrap(" ".join(text.split()), width)[: max(1, size // (font_px + 3))]
  ImageDraw.Draw(tile).multiline_text((4, 4), "\n".join(lines), fill=INK, font=_font(font_px),
                                      spacing=3)
  return tile


def result_sheet(query_tile, query_caption, hits, thumbnails, *, tile=128, columns=6,
                 query_category=None):
  """A PIL image: the query tile, then one tile per hit captioned "#rank score category".

  Hits whose category equals `query_category` get a green frame.
  """
  cells = [(query_tile, [query_caption], QUERY_FRAME)]
  for hit, thumb in zip(hits, thumbnails):
    frame = MATCH_FRAME if query_category and hit["category"] == query_category else None
    cells.append((image_tile(thumb, tile), [f"#{hit['rank']}  {hit['score']:.3f}",
                                           hit["category"] or hit["id"]], frame))
  columns = max(1, min(columns, len(cells)))
  rows = -(-len(cells) // columns)
  font_px = max(9, tile // 10)
  caption = 2 * (font_px + 3) + 4
  pad = 6
  sheet = Image.new("RGB", (columns * (tile + pad) + pad, rows * (tile + caption + pad) + pad),
                    BACKGROUND)
  draw = ImageDraw.Draw(sheet)
  font = _font(font_px)
  for i, (image, lines, frame) in enumerate(cells):
    x = pad + (i % columns) * (tile + pad)
    y = pad + (i // columns) * (tile + caption + pad)
    sheet.paste(image.resize((tile, tile)) if image.size != (tile, tile) else image, (x, y))
    if frame is not None:
      draw.rectangle([x - 2, y - 2, x + tile + 1, y + tile + 1], outline=frame, width=3)
    for j, line in enumerate(lines):
      draw.text((x, y + tile + 3 + j * (font_px + 3)), fit_text(draw, line, font, tile), fill=INK,
                font=font)
  return sheet


def fit_text(draw, text, font, width):
  """`text`, shortened with an ellipsis until it fits `width` pixels."""
  if draw.textlength(text, font=font) <= width:
    return text
  while text and draw.textlength(text + "…", font=font) > width:
    text = text[:-1]
  return text + "…"


def png_bytes(image):
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return buffer.getvalue()
