"""Opens a results page (a run's eval/index.html, a reproduction's report.html) in headless
Chromium: its console errors, its images that did not load, and a screenshot on request.

Used by the page tests, and to take README's screenshot of a reproduction page:

  python -m tests.page_browser PAGE.html [--screenshot=docs/reproduction.png]
      [--element=main-figure] [--width=1400]

Needs Debian's `chromium` and `chromium-driver` and the `selenium` package.
"""

import argparse
import json
import os

from tests.serving import web_browser


def open_page(path, *, screenshot=None, element=None, width=1400, height=1000):
  """{"title", "images" (count), "broken_images" (their src), "errors" (console messages at
  SEVERE)} of the page at `path`; `screenshot`: a PNG of the page, or of the element with id
  `element`."""
  from selenium.webdriver.common.by import By

  driver = web_browser.make_driver(width, height, console_log=True)
  try:
    driver.get("file://" + os.path.abspath(path))
    images = driver.find_elements(By.TAG_NAME, "img")
    broken = [img.get_attribute("src") for img in images
              if not driver.execute_script("return arguments[0].complete && "
                                           "arguments[0].naturalWidth > 0", img)]
    errors = [entry["message"] for entry in driver.get_log("browser")
              if entry.get("level") == "SEVERE"]
    if screenshot:
      target = driver.find_element(By.ID, element) if element else None
      if target is not None:
        target.screenshot(str(screenshot))
      else:
        driver.save_screenshot(str(screenshot))
    return {"title": driver.title, "images": len(images), "broken_images": broken,
            "errors": errors}
  finally:
    driver.quit()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("page")
  parser.add_argument("--screenshot", default="")
  parser.add_argument("--element", default="")
  parser.add_argument("--width", type=int, default=1400)
  args = parser.parse_args()
  result = open_page(args.page, screenshot=args.screenshot or None,
                     element=args.element or None, width=args.width)
  print(json.dumps(result, indent=1))
  return 1 if result["errors"] or result["broken_images"] else 0


if __name__ == "__main__":
  raise SystemExit(main())
