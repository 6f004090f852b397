"""Screenshots of stage 1, stage 2 and the leaderboard with headless Chromium (Playwright).

  python -m hyperquest.screenshots --out docs

Real dataset size (8500/1500); the baseline uses 1 seed x 2 epochs so that it is ready quickly
(the screenshot's baseline number is therefore lower than the game's 3 x 10-epoch baseline).
"""
import argparse
import os
import shutil
import tempfile

from playwright.sync_api import sync_playwright

from hyperquest.devtools import Server

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--out", default="docs")
  args = p.parse_args()
  out = os.path.abspath(args.out)
  data = tempfile.mkdtemp(prefix="hq_screens_")
  server = Server(data, flags=["--baseline-seeds", "1", "--baseline-epochs", "2",
                               "--num-datasets", "1"])
  try:
    with sync_playwright() as pw:
      browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
      page = browser.new_page(viewport={"width": 1200, "height": 900})
      page.goto(server.url + "/login")
      page.fill("#reg_student", "student42")
      page.click("#reg_submit")
      page.click("#to_survey")
      for box in ("#education_2", "#years_3", "#self_rating_2", "#networks_1"):
        page.check(box)
      page.click("#survey_submit")
      page.click("#start")
      page.screenshot(path=os.path.join(out, "hyperquest_stage1.png"), full_page=True)
      page.check("#lr_1")
      page.click("#configure_submit")
      for moves in (["#move_lr_up"], ["#act_revert"], ["#move_width_up", "#move_dropout_up"]):
        page.wait_for_selector("#counter", timeout=300_000)
        for m in moves:
          page.check(m)
        page.click("#act_submit")
      page.wait_for_selector("#counter", timeout=300_000)
      page.check("#move_lr_down")
      page.screenshot(path=os.path.join(out, "hyperquest_stage2.png"), full_page=True)
      page.check("#act_done")
      page.click("#act_submit")
      for _ in range(600):
        page.goto(server.url + "/leaderboard")
        if "student42" in page.inner_text("#players"):
          break
        page.wait_for_timeout(1000)
      page.screenshot(path=os.path.join(out, "hyperquest_leaderboard.png"), full_page=True)
      browser.close()
  finally:
    server.stop()
    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
  main()
