"""HyperQuest under bad input (issue 21, item 9): ids checked before the database, friendly error
pages without Python internals, the survey before a game, form tokens bound to their form and
expiring, no stored tokens for page views, openapi off, and a 200-request fuzz: no 5xx, no state
change. The app runs without its lifespan (no worker threads), so nothing trains in the
background and the store changes only through requests."""
import random
import time

import pytest
from fastapi.testclient import TestClient

from hyperquest import security
from hyperquest.devtools import TINY, Player, form_fields
from hyperquest.web import MAX_BODY, create_app

# Text that must never reach a page: tracebacks, Python's own messages, FastAPI's default JSON.
INTERNALS = ("Traceback", "invalid literal", "with base 10", "NoneType", 'File "', "int_parsing",
             '"detail"', "Internal Server Error")


def client(app):
  return TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)


def assert_friendly(r, status):
  assert r.status_code == status, (r.status_code, r.text[:300])
  assert not any(s in r.text for s in INTERNALS), r.text
  if "text/html" in r.headers.get("content-type", ""):
    assert 'id="error"' in r.text


def dump(app):
  """Every row of every table of the store (the state the fuzz must not change)."""
  store = app.state.engine.store
  tables = [r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")]
  return {t: sorted(tuple(r) for r in store.query(f"SELECT * FROM {t}")) for t in tables}


@pytest.fixture()
def clock():
  return [time.time()]


@pytest.fixture()
def app(tmp_path, clock):
  return create_app(str(tmp_path), TINY, clock=lambda: clock[0])


@pytest.fixture()
def alice(app):
  p = Player(client(app), "alice")
  p.register_and_survey()
  p.sid = int(str(p.post("/home", "/sessions", {}).url).rsplit("/", 1)[1])
  return p


def test_bad_ids_are_404_pages_before_the_database(app, alice):
  c = alice.c
  for bad in ("99999999999999999999999", "9223372036854775808", "abc", "1.5", "-1", "0x1",
              "%C2%B9", "%D9%A1", "1%00", "9" * 5000):
    for suffix in ("", "/plot.svg"):
      r = c.get(f"/session/{bad}{suffix}")
      assert_friendly(r, 404)
      assert "No such session" in r.text
    r = c.get(f"/session/{bad}/status")
    assert r.status_code == 404 and r.json() == {"error": r.json()["error"]}
    for action in ("act", "configure"):
      assert_friendly(c.post(f"/session/{bad}/{action}", data={"action": "done"}), 404)
  assert_friendly(c.get("/no/such/page"), 404)
  assert_friendly(c.put("/home"), 405)
  assert c.get(f"/session/{alice.sid}").status_code == 200  # a good id still works


def test_error_pages_show_no_python_internals(app, alice, monkeypatch):
  path = f"/session/{alice.sid}/configure"
  fields = form_fields(alice.c.get(f"/session/{alice.sid}").text, path)
  for width in ("abc", "1e400", "nan", "32.5"):
    r = alice.c.post(path, data={**fields, "width": width, "lr": "0.01", "depth": "2",
                                 "dropout": "0"})
    assert_friendly(r, 400)
    assert "CNN Network width must be one of [32, 64, 128]" in r.text
  # The refused form kept its nonce: corrected and submitted again, it is applied.
  r = alice.c.post(path, data={**fields, "width": "64", "lr": "0.01", "depth": "2",
                               "dropout": "0"}, follow_redirects=False)
  assert r.status_code == 303 and app.state.engine.view(alice.sid)["hp"]["width"] == 64
  assert_friendly(alice.c.post("/register", content=b"x" * (MAX_BODY + 1),
                               headers={"content-type": "application/x-www-form-urlencoded"}),
                  413)
  # A server bug is a friendly 500 page too (the fuzz shows that no input reaches one).
  monkeypatch.setattr(app.state.engine, "view", lambda sid: 1 / 0)
  r = alice.c.get(f"/session/{alice.sid}")
  assert_friendly(r, 500)
  assert "Something went wrong on the server" in r.text and "ZeroDivision" not in r.text


def test_openapi_and_docs_are_off(app):
  c = client(app)
  for path in ("/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"):
    assert_friendly(c.get(path), 404)


def test_survey_required_before_a_game(app, tmp_path, clock):
  p = Player(client(app), "dave")
  p.post("/login", "/register", {"student_id": "dave"})
  pid = app.state.engine.store.player_by_student("dave")["id"]
  # The home page redirects to the survey, so take the form a page would have served.
  nonce, csrf = security.form_token(security.load_key(str(tmp_path)), pid, "/sessions", clock[0])
  r = p.c.post("/sessions", data={"nonce": nonce, "csrf": csrf})
  assert_friendly(r, 403)
  assert "answer the survey" in r.text and 'href="/survey"' in r.text
  assert app.state.engine.store.sessions_of(pid) == []
  p.post("/survey", "/survey", {"education": "PhD student", "years": "2+ years",
                                "self_rating": "Expert", "networks": ["None of the above"]})
  r = p.c.post("/sessions", data={"nonce": nonce, "csrf": csrf}, follow_redirects=False)
  assert r.status_code == 303 and len(app.state.engine.store.sessions_of(pid)) == 1


def test_form_tokens_bound_to_their_form_expire_and_are_pruned(app, alice, clock):
  c, store = alice.c, app.state.engine.store
  home = c.get("/home").text
  logout, start = form_fields(home, "/logout"), form_fields(home, "/sessions")
  # A token of one form does not work for another one (nor for the same form of another session).
  assert "forged" in c.post("/sessions", data=logout).text
  other = int(str(c.post("/sessions", data=start).url).rsplit("/", 1)[1])
  configure = form_fields(c.get(f"/session/{alice.sid}").text, f"/session/{alice.sid}/configure")
  r = c.post(f"/session/{other}/configure", data={**configure, "width": "32", "lr": "0.01",
                                                  "depth": "2", "dropout": "0"})
  assert r.status_code == 403 and "forged" in r.text
  # Anonymous page views store nothing (tokens are signed, not stored).
  before = dump(app)
  anon = client(app)
  for _ in range(30):
    anon.get("/login")
  assert dump(app) == before
  # Only applied forms are stored: registration, survey and two starts (not the refused posts).
  assert store.query("SELECT COUNT(*) AS n FROM used_nonces")[0]["n"] == 4
  # Forms expire: a page older than FORM_TTL is refused with "reload", a fresh one works.
  clock[0] += security.FORM_TTL + 1
  r = c.post(f"/session/{alice.sid}/configure", data={**configure, "width": "32", "lr": "0.01",
                                                      "depth": "2", "dropout": "0"})
  assert r.status_code == 403 and "Reload the page" in r.text and "expire" in r.text
  alice.post("/home", "/sessions", {})
  # Using a form prunes the nonces of expired forms: only the new one is left.
  assert store.query("SELECT COUNT(*) AS n FROM used_nonces")[0]["n"] == 1


# ---------------------------------------------------------------- fuzz
BAD_IDS = ("99999999999999999999999", "9223372036854775808", "-1", "0", "abc", "1.5", "1e3",
           "0x10", "%D9%A1", "%00", "%F0%9F%98%80", "NaN", "9" * 300, "1;DROP TABLE sessions")
STRANGE_PATHS = ("/session/", "/session//act", "//home", "/session/1/act/x", "/%2e%2e/home",
                 "/static/../../etc/passwd", "/favicon.ico", "/docs", "/openapi.json",
                 "/leaderboard?x=" + "%" * 500, "/home?sid=-1&sid=abc", "/" + "a" * 4000)
TEXTS = ("", " ", "abc", "1e400", "nan", "-0", "32.5", "<script>alert(1)</script>", "x" * 3000,
         "é\u202e\x00", "\U0001f600\uffff", "' OR 1=1 --", "move_up")
CONFIG = {"width": "32", "lr": "0.01", "depth": "2", "dropout": "0"}
SURVEY = {"education": "PhD student", "years": "2+ years", "self_rating": "Expert",
          "networks": ["None of the above"]}


class Fuzz:
  """Makers of hostile requests; each returns (client, method, path, httpx keyword arguments)."""

  def __init__(self, app, key, clock, players, anon, replayed):
    self.key, self.clock, self.anon, self.replayed = key, clock, anon, replayed
    self.players = players  # name -> (client, player id, a session id of theirs or None)

  def token(self, pid, path, age=0):
    nonce, csrf = security.form_token(self.key, pid, path, self.clock[0] - age)
    return {"nonce": nonce, "csrf": csrf}

  def someone(self, rng, anon=True):
    names = sorted(self.players) + (["anon"] if anon else [])
    name = rng.choice(names)
    return (self.anon, 0, None) if name == "anon" else self.players[name]

  def bad_id(self, rng):
    c, pid, _ = self.someone(rng)
    bad = rng.choice(BAD_IDS)
    if rng.random() < 0.5:
      return c, "GET", f"/session/{bad}{rng.choice(['', '/status', '/plot.svg'])}", {}
    path = f"/session/{bad}/{rng.choice(['act', 'configure'])}"
    return c, "POST", path, {"data": {**self.token(pid, path), **CONFIG, "action": "done"}}

  def other_players_session(self, rng):
    c, pid, _ = self.players["alice"]
    _, _, theirs = self.players["bob"]
    if rng.random() < 0.5:
      c, pid, _ = self.players["bob"]
      theirs = self.players["alice"][2]
    suffix = rng.choice(["", "/status", "/plot.svg", "/act", "/configure"])
    path = f"/session/{theirs}{suffix}"
    if suffix in ("/act", "/configure"):  # with a valid token of the attacker for that form
      return c, "POST", path, {"data": {**self.token(pid, path), **CONFIG, "action": "done"}}
    return c, "GET", path, {}

  def wrong_method(self, rng):
    c, _, sid = self.someone(rng)
    path = rng.choice(["/home", "/login", "/sessions", "/logout", "/survey", "/leaderboard",
                       "/healthz", f"/session/{sid or 1}", f"/session/{sid or 1}/act"])
    method = rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"])
    if path in ("/sessions", "/logout") or path.endswith("/act"):
      method = rng.choice([method, "GET"])
    elif path in ("/home", "/leaderboard", "/healthz"):
      method = rng.choice([method, "POST"])
    return c, method, path, {"data": {"action": "done"}} if method != "HEAD" else {}

  def bad_token(self, rng):
    """Content the server would apply, under a token that must not let it through."""
    c, pid, sid = self.someone(rng)
    path, data = rng.choice([("/register", {"student_id": f"mallory{rng.randrange(99)}"}),
                             ("/login", {"student_id": "alice", "secret": "x"}),
                             ("/logout", {}), ("/survey", SURVEY), ("/sessions", {}),
                             (f"/session/{sid}/configure", CONFIG),
                             (f"/session/{sid}/act", {"action": "done"})])
    other = rng.choice([p for p in self.players.values() if p[1] != pid])[1]
    token = rng.choice([
      {}, {"nonce": "1.x"}, {"csrf": "0" * 64},
      {"nonce": f"{int(self.clock[0])}.abc", "csrf": "f" * 64},
      {"nonce": rng.choice(TEXTS), "csrf": rng.choice(TEXTS)}, {"nonce": "1.x", "csrf": "é" * 64},
      self.token(pid, "/logout" if path != "/logout" else "/survey"),  # another form's
      self.token(other, path),  # another player's
      self.token(pid, path, age=security.FORM_TTL + rng.randrange(1, 10**6)),  # expired
      None,  # alice's survey form, already used
    ])
    if token is None:
      return self.players["alice"][0], "POST", "/survey", {"data": {**SURVEY, **self.replayed}}
    return c, "POST", path, {"data": {**data, **token}}

  def valid_token_bad_content(self, rng):
    """A genuine token of the form, with content the rules refuse (so no nonce is used up)."""
    name, c = rng.choice([("alice", None), ("queued", None), ("carol", None), ("anon", None)])
    if name == "anon":
      c, pid = self.anon, 0
      path, data = rng.choice([
        ("/register", {"student_id": rng.choice(["", "a b", "x" * 65, "<b>", "alice", "\x00"])}),
        ("/login", {"student_id": rng.choice(["alice", "nobody", ""]),
                    "secret": rng.choice(TEXTS)})])
    elif name == "carol":  # registered, never answered the survey
      c, pid, _ = self.players["carol"]
      path, data = "/sessions", {}
    else:
      c, pid, sid = self.players["alice"]
      sid = self.players["queued"][2] if name == "queued" else sid
      path = f"/session/{sid}/{rng.choice(['act', 'configure'])}"
      data = {k: rng.choice((v, rng.choice(TEXTS))) for k, v in CONFIG.items()}
      data.update(action=rng.choice(["continue", "revert", "done", *TEXTS]),
                  move_lr=rng.choice(["up", "down", *TEXTS]))
      if path.endswith("configure") and name != "queued":
        data["width"] = rng.choice(TEXTS)  # stage 1 with a valid width would be applied
      c = self.players["alice"][0]
    return c, "POST", path, {"data": {**data, **self.token(pid, path)}}

  def oversized(self, rng):
    c, pid, sid = self.someone(rng)
    path = rng.choice(["/register", "/login", "/survey", f"/session/{sid}/act"])
    size = rng.choice([MAX_BODY + 1, 300_000, 3_000_000])
    head = "&".join(f"{k}={v}" for k, v in self.token(pid, path).items()).encode()
    body = head + b"&student_id=" + b"a" * size
    kw = {"headers": {"content-type": "application/x-www-form-urlencoded"}}
    if rng.random() < 0.5:  # chunked, without a Content-Length
      return c, "POST", path, {**kw, "content": (body[i:i + 8192] for i in
                                                 range(0, len(body), 8192))}
    return c, "POST", path, {**kw, "content": body}

  def malformed_body(self, rng):
    c, pid, sid = self.someone(rng)
    # Forms that a genuine token with no usable fields cannot get through.
    path = rng.choice(["/register", "/login", "/survey", f"/session/{sid}/configure",
                       f"/session/{sid}/act"])
    token = self.token(pid, path)
    form = "&".join(f"{k}={v}" for k, v in token.items())
    kind = rng.randrange(7)
    if kind == 0:
      return c, "POST", path, {"files": {"nonce": ("n.txt", token["nonce"].encode()),
                                         "csrf": ("c.txt", token["csrf"].encode())}}
    ctype, body = [
      (None, None),
      ("application/x-www-form-urlencoded", form.encode() + b"&student_id=\xff\xfe%zz%&="),
      ("multipart/form-data", form.encode()),  # no boundary
      ("multipart/form-data; boundary=xx", b"--xx\r\nContent-Disposition: form-data\r\n\r\n"),
      ("application/json", b'{"nonce": "%s", "action": "done"}' % token["nonce"].encode()),
      ("application/x-www-form-urlencoded", "&".join(["a=1"] * 3000).encode()),
    ][kind - 1]
    return c, "POST", path, {} if ctype is None else {"headers": {"content-type": ctype},
                                                      "content": body}

  def bad_cookie(self, rng):
    pid = self.players["alice"][1]
    forged = rng.choice([b"1.2.abc", b"\xe9\xff", b"1.2.\xe9\xff", b"x" * 4000, b"..", b"-1.0.0",
                         b"%d.%d.%s" % (pid, self.clock[0], b"0" * 64),
                         b"99999999999999999999.1." + b"f" * 64])
    path = rng.choice(["/home", "/survey", f"/session/{self.players['alice'][2]}",
                       f"/session/{self.players['alice'][2]}/status", "/leaderboard"])
    method = rng.choice(["GET", "POST"]) if path != "/leaderboard" else "GET"
    return self.anon, method, path, {"headers": {"cookie": b"hq_session=" + forged}}

  def strange_path(self, rng):
    c, _, _ = self.someone(rng)
    return c, rng.choice(["GET", "POST"]), rng.choice(STRANGE_PATHS), {}

  makers = (bad_id, other_players_session, wrong_method, bad_token, valid_token_bad_content,
            oversized, malformed_body, bad_cookie, strange_path)


def test_fuzz_200_hostile_requests_no_5xx_no_state_change(app, alice, tmp_path, clock):
  store = app.state.engine.store
  bob, carol = Player(client(app), "bob"), Player(client(app), "carol")
  bob.register_and_survey()
  bob.sid = int(str(bob.post("/home", "/sessions", {}).url).rsplit("/", 1)[1])
  carol.post("/login", "/register", {"student_id": "carol"})
  queued = alice.start()  # configured: its epoch waits for a worker that this app never starts
  replayed = form_fields(alice.c.get("/survey").text, "/survey")
  alice.c.post("/survey", data={**replayed, **SURVEY})
  ids = {p.student_id: store.player_by_student(p.student_id)["id"] for p in (alice, bob, carol)}
  players = {"alice": (alice.c, ids["alice"], alice.sid), "bob": (bob.c, ids["bob"], bob.sid),
             "carol": (carol.c, ids["carol"], None), "queued": (alice.c, ids["alice"], queued)}
  fuzz = Fuzz(app, security.load_key(str(tmp_path)), clock, players, client(app), replayed)
  rng = random.Random(21)
  before = dump(app)
  t0, seen, failures = time.time(), {}, []
  for i in range(200):
    maker = Fuzz.makers[i % len(Fuzz.makers)]
    c, method, path, kw = maker(fuzz, rng)
    r = c.request(method, path, follow_redirects=False, **kw)
    seen[r.status_code] = seen.get(r.status_code, 0) + 1
    leaked = [s for s in INTERNALS if s in r.text]
    if r.status_code >= 500 or leaked:
      failures.append((maker.__name__, method, path[:80], r.status_code, leaked))
  assert failures == [], failures
  assert dump(app) == before, "a hostile request changed the store"
  assert {303, 400, 401, 403, 404, 405, 409, 413} <= set(seen), seen
  assert time.time() - t0 < 30, "the fuzz should take a few seconds"
  # The players are still signed in and their forms still work.
  assert alice.c.get(f"/session/{alice.sid}").status_code == 200
  assert bob.post(f"/session/{bob.sid}", f"/session/{bob.sid}/configure",
                  CONFIG).status_code == 200
