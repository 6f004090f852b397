"""HyperQuest in a real headless Chromium (Playwright): the whole game, ownership, forged and
replayed forms, and a server killed mid-session (the page shows "connection lost, retrying") that
resumes with nothing lost."""
import os
import re
import shutil

import pytest

from hyperquest.devtools import TINY_FLAGS, Server

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

if not os.path.exists(CHROMIUM):
  pytest.skip("BROWSER TESTS SKIPPED: Chromium is not installed. Run "
              "`apt-get update && apt-get install -y chromium chromium-driver` "
              "(CI's .ci/run does this).", allow_module_level=True)
sync_api = pytest.importorskip(
  "playwright.sync_api", reason="BROWSER TESTS SKIPPED: pip install playwright (requirements.txt)")


def wait_ready(page, timeout=60_000):
  """The page polls while an epoch trains and reloads itself; wait for the action form."""
  page.wait_for_selector("#counter, #finished", timeout=timeout)


def test_game_in_chromium(tmp_path):
  shots = os.environ.get("HYPERQUEST_SCREENSHOTS")  # e.g. docs/ to refresh the README pictures
  data = str(tmp_path / "data")
  os.makedirs(data)
  # Jobs wait 1 s in the queue so the server can be killed while an epoch is pending.
  server = Server(data, flags=TINY_FLAGS, env={"HYPERQUEST_JOB_DELAY": "1.0"})
  with sync_api.sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
      ctx = browser.new_context(viewport={"width": 1200, "height": 900})
      page = ctx.new_page()
      base = server.url
      # Register, sign out, sign in again with the server-issued secret.
      page.goto(base + "/login")
      page.fill("#reg_student", "alice")
      page.click("#reg_submit")
      secret = page.inner_text("#secret")
      page.click("#logout")
      page.fill("#login_student", "alice")
      page.fill("#login_secret", secret)
      page.click("#login_submit")
      assert page.url.endswith("/survey")
      for box in ("#education_2", "#years_3", "#self_rating_2", "#networks_1", "#networks_3"):
        page.check(box)
      page.click("#survey_submit")
      assert "You have trained 0 networks so far!" in page.inner_text("#trained")
      page.click("#start")
      sid = int(page.url.rstrip("/").split("/")[-1])
      assert "Initial Network Configuration" in page.content()
      assert "Train (256), Val (64)" in page.inner_text("main")
      if shots:
        page.screenshot(path=os.path.join(shots, "hyperquest_stage1.png"), full_page=True)
      page.check("#lr_1")  # 0.01
      page.click("#configure_submit")
      wait_ready(page)
      assert "Action 1 of max 60" in page.inner_text("#counter")
      assert "After training 1 of max 30 epochs" in page.inner_text("#counter")

      # Epoch 2 with an Up; "Next value" updates live in the page.
      page.check("#move_lr_up")
      assert page.inner_text("#next_lr") == "3.00e-02"
      assert page.is_disabled("#move_wd_down") and page.is_disabled("#move_dropout_down")
      page.click("#act_submit")
      page.wait_for_selector("#training")  # the page shows that an epoch is running
      wait_ready(page)
      assert "Learning rate (3.00e-02)" in page.content()
      # Revert: back to epoch 1's hyperparameters; the epoch still counts.
      page.check("#act_revert")
      page.click("#act_submit")
      wait_ready(page)
      assert "Action 3 of max 60" in page.inner_text("#counter")
      assert "After training 2 of max 30 epochs" in page.inner_text("#counter")
      assert "Learning rate (1.00e-02)" in page.content()

      # Epoch 3 is queued, then the server is killed (SIGKILL) and restarted.
      page.check("#move_width_up")
      page.click("#act_submit")
      page.wait_for_selector("#training")
      server.kill()
      # While the server is down the polling page says so (instead of "Running now" forever).
      page.wait_for_selector("#offline", state="visible", timeout=20_000)
      assert "Connection to the server lost, retrying" in page.inner_text("#offline")
      server = Server(data, port=server.port, flags=TINY_FLAGS)
      wait_ready(page)  # the same page, still polling, picks up the resumed epoch
      page.reload()
      assert "Action 4 of max 60" in page.inner_text("#counter")
      assert "After training 3 of max 30 epochs" in page.inner_text("#counter")
      assert "CNN Network width (64)" in page.content()
      history = page.inner_text("#history")
      assert history.count("Width =") == 3 and "(reverted)" in history
      assert page.locator("svg polyline").count() >= 2
      if shots:
        page.screenshot(path=os.path.join(shots, "hyperquest_stage2.png"), full_page=True)

      # Replay: post the same form twice (the second is refused); then a forged token.
      fields = {n: page.get_attribute(f'#actform input[name="{n}"]', "value")
                for n in ("nonce", "csrf")}
      page.check("#act_done")
      page.click("#act_submit")
      page.wait_for_selector("#finished")
      r = ctx.request.post(f"{base}/session/{sid}/act", form={**fields, "action": "continue"})
      assert r.status == 409 and "already submitted" in r.text()
      page.goto(base + "/home")
      page.eval_on_selector('form[action="/sessions"] input[name="csrf"]',
                            "e => e.value = 'f'.repeat(64)")
      page.click("#start")
      assert "forged" in page.inner_text("#error")

      # The leaderboard shows Alice's score once the dataset's baseline is in.
      for _ in range(60):
        page.goto(base + "/leaderboard")
        if "alice" in page.inner_text("#players"):
          break
        page.wait_for_timeout(500)
      row = page.inner_text("#players")
      assert re.search(r"alice\s+[+-]\d\.\d{3}", row), row
      if shots:
        page.screenshot(path=os.path.join(shots, "hyperquest_leaderboard.png"), full_page=True)

      # Another player cannot open Alice's session.
      bob = browser.new_context().new_page()
      bob.goto(base + "/login")
      bob.fill("#reg_student", "bob")
      bob.click("#reg_submit")
      resp = bob.goto(f"{base}/session/{sid}")
      assert resp.status == 403 and "another player" in bob.inner_text("#error")
    finally:
      browser.close()
      server.stop()
      shutil.rmtree(data, ignore_errors=True)
