"""CLP: clip art rendering of a scene: flat saturated fills and bold black outlines, no noise."""

import colorsys

from PIL import Image, ImageDraw

from cmp_tf.data.synthcmp.scene import pixel_polygons

OUTLINE = (0, 0, 0)
PLAIN_BACKGROUND = 0.25  # chance of objects on white paper, with only the horizon drawn


def saturate(rgb, saturation=1.35, hue_shift=0.0):
  """The clip-art version of a palette colour: more saturated, never murky."""
  h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
  if s > 0.08:
    s = min(1.0, s * saturation + 0.15)
    h = (h + hue_shift) % 1.0
  v = min(1.0, max(v, 0.3) * 1.1)
  return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v))


def render(scene, draws, size):
  """A clip art RGB PIL image of `scene` (`draws` picks the outline weight)."""
  image = Image.new("RGB", (size, size), (255, 255, 255))
  draw = ImageDraw.Draw(image)
  width = max(1, int(round(size / 32 * draws.uniform(0.8, 1.3))))
  saturation, hue_shift = draws.uniform(1.0, 1.6), draws.uniform(-0.08, 0.08)  # the artist's palette
  plain = draws.random() < PLAIN_BACKGROUND
  parts = scene.parts()
  for part, polygon in zip(parts, pixel_polygons(parts, size)):
    fill = saturate(part.rgb, saturation, hue_shift)
    if part.edge is not None:  # a background band: outline only its upper edge
      if not plain:
        draw.polygon(polygon, fill=fill)
      if len(part.edge):
        draw.line((part.edge[:, ::-1] * size).ravel().tolist(), fill=OUTLINE, width=width)
      continue
    xs, ys = polygon[0::2], polygon[1::2]
    extent = min(max(ys) - min(ys), max(xs) - min(xs))
    draw.polygon(polygon, fill=fill, outline=OUTLINE, width=max(1, min(width, int(extent / 4))))
  return image
