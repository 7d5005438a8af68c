"""Drives the photo-search page in headless Chromium: a sketch, a word layout, a sentence.

Used by the browser test, and to take README's screenshot of a running server:

  python -m tests.serving.web_browser --url=http://127.0.0.1:8080/ --screenshot=docs/web.png
      [--words=sky,sea,sand,umbrella] [--text="..."]

Needs Debian's `chromium` and `chromium-driver` and the `selenium` package.
"""

import argparse
import json
import shutil

SKETCH_STROKES = (  # (x, y) offsets from the canvas centre, one list per stroke: a kitchen
    [(-110, 40), (110, 40)],                       # counter top
    [(-100, 40), (-100, 110), (-30, 110), (-30, 40)],  # a cupboard
    [(20, 40), (20, -10), (80, -10), (80, 40)],    # a stove
    [(-90, -100), (-30, -100), (-30, -40), (-90, -40), (-90, -100)],  # a window
)
DEFAULT_WORDS = (("sky", 0.5, 0.12), ("sea", 0.5, 0.45), ("sand", 0.7, 0.85),
                 ("umbrella", 0.25, 0.7))
DEFAULT_TEXT = ("I walked along the shore in the sun. The waves were loud and children "
                "built castles in the sand.")


def make_driver(width=1400, height=900, console_log=False):
  """Headless Chromium; `console_log`: keep the page's console for `driver.get_log`."""
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service

  options = webdriver.ChromeOptions()
  for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                   "--disable-gpu", f"--window-size={width},{height}"):
    options.add_argument(argument)
  if console_log:
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  binary = shutil.which("chromium") or shutil.which("chromium-browser")
  if binary:
    options.binary_location = binary
  driver_path = shutil.which("chromedriver")
  service = Service(executable_path=driver_path) if driver_path else Service()
  return webdriver.Chrome(options=options, service=service)


def _wait_for_results(driver, timeout=60):
  """The status line and result captions once the search answered (error: AssertionError)."""
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  def answered(d):
    status = d.find_element(By.ID, "status")
    text = status.text
    if "error" in (status.get_attribute("class") or ""):
      raise AssertionError(f"the page shows an error: {text}")
    return text if " photos in " in text else False

  status = WebDriverWait(driver, timeout).until(answered)
  WebDriverWait(driver, timeout).until(lambda d: all(
      img.get_attribute("naturalWidth") not in (None, "0")
      for img in d.find_elements(By.CSS_SELECTOR, "#results .result img")))
  captions = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#results .result div")]
  return status, captions


def _clear_status(driver):
  driver.execute_script("document.getElementById('status').textContent = '';"
                        "document.getElementById('results').replaceChildren();")


def drive(url, *, words=DEFAULT_WORDS, text=DEFAULT_TEXT, screenshot=None, driver=None):
  """Runs the three queries through the page; returns {kind: (status, captions)}."""
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  own = driver is None
  driver = driver or make_driver()
  try:
    driver.get(url)
    WebDriverWait(driver, 30).until(
        lambda d: "photos" in d.find_element(By.ID, "run-info").text)
    out = {}

    canvas = driver.find_element(By.ID, "sketch-canvas")
    for stroke in SKETCH_STROKES:
      chain = ActionChains(driver).move_to_element_with_offset(canvas, *stroke[0])
      chain.click_and_hold()
      for x, y in stroke[1:]:
        chain.move_to_element_with_offset(canvas, x, y)
      chain.release().perform()
    driver.find_element(By.ID, "sketch-search").click()
    out["sketch"] = _wait_for_results(driver)

    _clear_status(driver)
    driver.find_element(By.ID, "tab-layout").click()
    box = driver.find_element(By.ID, "layout-box")
    size = box.size
    for word, x, y in words:
      field = driver.find_element(By.ID, "word-input")
      field.clear()
      field.send_keys(word)
      ActionChains(driver).move_to_element_with_offset(
          box, int((x - 0.5) * size["width"]), int((y - 0.5) * size["height"])).click().perform()
    WebDriverWait(driver, 30).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#layout-box .word")) == len(words))
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "rendered").get_attribute("src"))
    driver.find_element(By.ID, "layout-search").click()
    out["layout"] = _wait_for_results(driver)
    if screenshot:
      driver.save_screenshot(str(screenshot))  # the layout beside its results

    _clear_status(driver)
    driver.find_element(By.ID, "tab-text").click()
    driver.find_element(By.ID, "text-input").send_keys(text)
    driver.find_element(By.ID, "text-search").click()
    out["text"] = _wait_for_results(driver)
    return out
  finally:
    if own:
      driver.quit()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--url", default="http://127.0.0.1:8080/")
  parser.add_argument("--screenshot", default="")
  parser.add_argument("--words", default=",".join(w for w, _, _ in DEFAULT_WORDS))
  parser.add_argument("--text", default=DEFAULT_TEXT)
  args = parser.parse_args()
  names = [w.strip() for w in args.words.split(",") if w.strip()]
  layout = [(w, *DEFAULT_WORDS[i % len(DEFAULT_WORDS)][1:]) for i, w in enumerate(names)]
  result = drive(args.url, words=layout, text=args.text, screenshot=args.screenshot or None)
  print(json.dumps({k: {"status": s, "top": c[:5]} for k, (s, c) in result.items()}, indent=1))


if __name__ == "__main__":
  main()
