"""Helpers for tests, benchmarks and screenshots: a server subprocess on 127.0.0.1 and a small
form-filling HTTP client (parses the nonce/CSRF hidden fields of a page's forms)."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx

from hyperquest.rules import Settings

# A game small enough for tests: in-process (TINY) and through the CLI (TINY_FLAGS).
TINY = Settings(train_size=128, val_size=64, batch_size=64, eval_batch_size=64,
                baseline_epochs=1, num_datasets=1)
TINY_FLAGS = ["--train-size", "256", "--val-size", "64", "--batch-size", "64",
              "--eval-batch-size", "64", "--baseline-epochs", "1", "--num-datasets", "1"]


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Server:
  """`python -m hyperquest serve` in a subprocess; kill() is a hard SIGKILL (a crash)."""

  def __init__(self, data_dir, port=None, flags=(), env=None):
    self.data_dir, self.port = data_dir, port or free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    cmd = [sys.executable, "-m", "hyperquest", "serve", "--port", str(self.port),
           "--data-dir", data_dir, *flags]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    full_env = {**os.environ, "PYTHONPATH": repo, **(env or {})}
    self.log = open(os.path.join(data_dir, f"server-{self.port}-{time.time():.0f}.log"), "w")
    self.proc = subprocess.Popen(cmd, cwd=repo, env=full_env, stdout=self.log,
                                 stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
      if self.proc.poll() is not None:
        raise RuntimeError(f"server exited with {self.proc.returncode}; log: {self.log.name}")
      try:
        if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
          return
      except httpx.HTTPError:
        time.sleep(0.2)
    self.kill()
    raise RuntimeError("server did not start within 60 s")

  def kill(self):
    if self.proc.poll() is None:
      self.proc.send_signal(signal.SIGKILL)
      self.proc.wait(10)
    self.log.close()

  def stop(self):
    if self.proc.poll() is None:
      self.proc.terminate()
      try:
        self.proc.wait(10)
      except subprocess.TimeoutExpired:
        self.proc.kill()
    self.log.close()


def form_fields(html, action):
  """The hidden nonce/csrf fields of the form posting to `action` on a page."""
  m = re.search(r'<form method="post" action="' + re.escape(action) + r'"[^>]*>(.*?)</form>',
                html, re.S)
  if m is None:
    raise LookupError(f"no form posting to {action}")
  return dict(re.findall(r'name="(nonce|csrf)" value="([^"]*)"', m.group(1)))


class Player:
  """A scripted player over plain HTTP (what the load test and web tests use)."""

  def __init__(self, client, student_id):
    self.c, self.student_id = client, student_id

  def post(self, page, action, data):
    html = self.c.get(page).text
    return self.c.post(action, data={**form_fields(html, action), **data})

  def register_and_survey(self):
    r = self.post("/login", "/register", {"student_id": self.student_id})
    self.secret = re.search(r'id="secret">([^<]+)<', r.text).group(1)
    self.post("/survey", "/survey", {"education": "PhD student", "years": "1 - 2 years",
                                     "self_rating": "Expert",
                                     "networks": ["Convolutional neural networks"]})
    return self.secret

  def start(self, width=32, lr=0.01, depth=2, dropout=0.0):
    r = self.post("/home", "/sessions", {})
    self.sid = int(str(r.url).rstrip("/").split("/")[-1])
    self.post(f"/session/{self.sid}", f"/session/{self.sid}/configure",
              {"width": width, "lr": lr, "depth": depth, "dropout": dropout})
    return self.sid

  def wait_ready(self, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
      status = self.c.get(f"/session/{self.sid}/status").json()["status"]
      if status != "queued":
        return status
      time.sleep(0.2)
    raise TimeoutError("epoch did not finish")

  def act(self, action, **moves):
    data = {"action": action, **{f"move_{k}": v for k, v in moves.items()}}
    return self.post(f"/session/{self.sid}", f"/session/{self.sid}/act", data)
