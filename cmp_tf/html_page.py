"""Self-contained HTML pages (analysis, a run's evaluation, a reproduction): numbers as
tables and pictures linked relatively, so a page's directory can be moved or served as is.

Each part of a page is a `Section`; `write_page` refuses to write a page that links a
picture missing from its directory.
"""

import dataclasses
import html
import os

from cmp_tf.fileio import write_text_atomic

INDEX_NAME = "index.html"
_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
p.note { color: #555; font-size: 0.9em; }
"""


@dataclasses.dataclass
class Section:
  """A titled part of the page: HTML `body` and the pictures it links (relative paths)."""
  title: str
  body: str
  images: tuple = ()


def text(value):
  """Escaped text for an HTML page."""
  return html.escape(str(value))


def paragraph(value, note=False):
  return f'<p{" class=note" if note else ""}>{text(value)}</p>'


def table(header, rows):
  """An HTML table; cells are escaped, floats shown with three decimals, None as a dash."""

  def cell(value):
    if value is None:
      return "&ndash;"
    if isinstance(value, float):
      return f"{value:.3f}"
    return text(value)

  head = "".join(f"<th>{text(h)}</th>" for h in header)
  body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
  return f"<table><tr>{head}</tr>{body}</table>"


def figure(src, caption="", width=None):
  """An image linked by its path relative to the page, with a caption."""
  style = f' style="width:{int(width)}px"' if width else ""
  cap = f"<figcaption>{text(caption)}</figcaption>" if caption else ""
  return (f'<figure{style}><a href="{text(src)}"><img src="{text(src)}" alt="{text(caption)}">'
          f"</a>{cap}</figure>")


def page(title, preamble, sections):
  """The HTML text of the page."""
  parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{text(title)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{text(title)}</h1>"]
  parts += [paragraph(line) for line in preamble]
  if sections:
    parts.append("<ul>" + "".join(f'<li><a href="#s{i}">{text(s.title)}</a></li>'
                                  for i, s in enumerate(sections)) + "</ul>")
  for i, section in enumerate(sections):
    parts.append(f'<h2 id="s{i}">{text(section.title)}</h2>')
    parts.append(section.body)
  parts.append("</body></html>\n")
  return "\n".join(parts)


def write_page(out_dir, title, preamble, sections, name=INDEX_NAME):
  """Writes `out_dir`/`name` atomically after checking every linked picture exists."""
  out_dir = os.fspath(out_dir)
  missing = [src for s in sections for src in s.images
             if not os.path.isfile(os.path.join(out_dir, src))]
  if missing:
    raise FileNotFoundError(f"{out_dir}: the page would link missing pictures: "
                            f"{', '.join(missing[:5])}")
  path = os.path.join(out_dir, name)
  write_text_atomic(path, page(title, preamble, sections))
  return path
