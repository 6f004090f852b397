"""The HyperQuest web app: FastAPI + Jinja2 pages, plain forms, a little polling.

Every POST carries a nonce (with its issue time) and a CSRF token (HMAC of player, form and
nonce). A token that does not verify, or that belongs to another player or another form, is
"forged" (403); one older than FORM_TTL has "expired" (403); a nonce already used is "replayed"
(409). Only applied forms use up their nonce. Sessions belong to their player: anyone else gets
403. Ids are checked before they reach the database and every error, bad URLs, methods and
bodies included, is a friendly page (JSON for the polled status): never Python internals.
"""
import contextlib
import os
import re
import time

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.exceptions import HTTPException

from hyperquest import rules, security
from hyperquest.engine import Engine, RuleError
from hyperquest.plot import curves_svg
from hyperquest.store import Store
from hyperquest.worker import WorkerPool

SURVEY = {
  "education": ("What is your current education status?",
                ["Undergraduate student", "Masters student", "PhD student",
                 "Not currently in a degree program"]),
  "years": ("How many years of experience training neural networks have you had?",
            ["This class is my first experience", "Less than 6 months", "6 months - 1 year",
             "1 - 2 years", "2+ years"]),
  "self_rating": ("How experienced would you consider yourself at training neural networks?",
                  ["Very inexperienced", "Some experience", "Moderately experienced", "Expert"]),
  "networks": ("What types of networks have you trained before? (Select all that apply.)",
               ["Fully connected networks", "Convolutional neural networks",
                "Recurrent neural networks", "Networks for vision tasks",
                "Networks for NLP tasks", "None of the above"]),
}


# Session ids in URLs: plain decimal digits, at most 18 so that they fit SQLite's 64-bit integers.
SESSION_ID = re.compile(r"[0-9]{1,18}")
# Request bodies beyond this are refused with 413 (the largest real form, the survey, is < 1 KB).
MAX_BODY = 64 * 1024
# What the friendly error page says for the HTTP errors raised outside the game's own code.
HTTP_MESSAGES = {
  400: "The form could not be read. Reload the page and submit it again.",
  404: "There is no page at this address.",
  405: "This address does not take that kind of request. Go back to the home page.",
  413: f"The request is too large (at most {MAX_BODY // 1024} KB).",
}
REPLAYED = ("Form refused: this form was already submitted (a replayed or double-clicked post). "
            "Reload the page to act again.")


class FormError(Exception):
  def __init__(self, status, message):
    super().__init__(message)
    self.status, self.message = status, message


class BodyLimit:
  """ASGI middleware: a request body read past `limit` bytes ends the request with 413, whether
  or not the client sent a Content-Length."""

  def __init__(self, app, limit):
    self.app, self.limit = app, limit

  async def __call__(self, scope, receive, send):
    seen = 0

    async def limited():
      nonlocal seen
      message = await receive()
      seen += len(message.get("body", b""))
      if seen > self.limit:
        raise HTTPException(413)
      return message

    await self.app(scope, limited if scope["type"] == "http" else receive, send)


def text(form, name, default=""):
  """A form field's text; a missing field or an uploaded file gives `default`."""
  value = form.get(name, default)
  return value if isinstance(value, str) else default


def create_app(data_dir, settings=None, num_workers=1, clock=time.time,
               form_ttl=security.FORM_TTL):
  """The app; `clock` and `form_ttl` let tests age form tokens without waiting."""
  os.makedirs(data_dir, exist_ok=True)
  store = Store(os.path.join(data_dir, "hyperquest.sqlite"))
  engine = Engine(store, settings)
  pool = WorkerPool(engine, num_workers)
  key = security.load_key(data_dir)
  templates = Jinja2Templates(directory=os.path.join(os.path.dirname(__file__), "templates"))
  templates.env.globals.update(rules=rules, fmt=rules.fmt_value, describe=rules.describe)

  @contextlib.asynccontextmanager
  async def lifespan(_):
    for name in templates.env.list_templates():  # compile templates before the first request
      templates.env.get_template(name)
    pool.start()  # also re-queues every epoch and baseline left over by a killed server
    yield
    pool.stop(timeout=1)

  app = FastAPI(title="HyperQuest", openapi_url=None, docs_url=None, redoc_url=None,
                lifespan=lifespan)
  app.add_middleware(BodyLimit, limit=MAX_BODY)
  app.state.engine, app.state.pool = engine, pool

  # ------------------------------------------------------------ helpers
  def me(request):
    pid = security.read_cookie(key, request.cookies.get(security.COOKIE, ""))
    return store.player(pid) if pid else None

  def page(request, name, player=None, status=200, **ctx):
    pid = player["id"] if player else 0

    def hidden(action):  # the nonce and CSRF fields of the form posting to `action`
      nonce, csrf = security.form_token(key, pid, action, clock())
      return Markup(f'<input type="hidden" name="nonce" value="{nonce}">'
                    f'<input type="hidden" name="csrf" value="{csrf}">')

    ctx.update(player=player, hidden=hidden)
    return templates.TemplateResponse(request, name, ctx, status_code=status)

  def error(request, status, message, player=None, link=None):
    return page(request, "error.html", player, status=status, message=message, link=link)

  async def checked_form(request, player_id):
    """The posted form if its token is this player's, for this form and unexpired (`spend`
    refuses a nonce already used)."""
    form = await request.form()
    nonce = text(form, "nonce")
    verdict = security.check_form_token(key, player_id, request.url.path, nonce,
                                        text(form, "csrf"), clock(), form_ttl)
    if verdict == "forged":
      raise FormError(403, "Form refused: its security token is missing or forged (or belongs "
                           "to another form). Reload the page and submit the form again.")
    if verdict == "expired":
      raise FormError(403, f"Form refused: this page is more than {form_ttl // 3600} hours old "
                           "(forms expire). Reload the page and submit the form again.")
    return form

  def spend(form, change):
    """Uses up the form's nonce, then applies `change()`. A change the rules refuse gives the
    nonce back, so the player can go Back, correct the form and submit it again."""
    nonce = text(form, "nonce")
    if not store.use_nonce(nonce, security.issued_at(nonce), clock() - form_ttl):
      raise FormError(409, REPLAYED)
    try:
      return change()
    except RuleError as e:
      store.release_nonce(nonce)
      raise FormError(400, f"Refused: {e}") from None

  def owned(request, sid_text):
    """(player, sid, refusal): refusal is None for the signed-in owner of an existing session,
    else (status, message); the id is checked before it reaches the database."""
    player = me(request)
    if player is None:
      return None, None, (401, "Please sign in.")
    sid = int(sid_text) if SESSION_ID.fullmatch(sid_text) else None
    sess = store.session(sid) if sid is not None else None
    if sess is None:
      return player, None, (404, "No such session: check the link, or open your sessions from "
                                 "the home page.")
    if sess["player_id"] != player["id"]:
      return player, None, (403, "Forbidden: this session belongs to another player.")
    return player, sid, None

  def refused(request, player, refusal):
    status, message = refusal
    if status == 401:
      return RedirectResponse("/login", 303)
    return error(request, status, message, player, link=("/home", "Your sessions"))

  @app.exception_handler(FormError)
  async def _form_error(request, exc):
    return error(request, exc.status, exc.message, me(request))

  @app.exception_handler(HTTPException)
  async def _http_error(request, exc):
    message = HTTP_MESSAGES.get(exc.status_code, "The request was refused.")
    return error(request, exc.status_code, message, me(request))

  @app.exception_handler(Exception)
  async def _server_error(request, exc):  # a bug or a broken disk: say so, show no internals
    return error(request, 500, "Something went wrong on the server. What you submitted before "
                               "is saved; reload the page in a moment.")

  # ------------------------------------------------------------ sign in / out, survey
  @app.get("/", response_class=HTMLResponse)
  def root(request: Request):
    return RedirectResponse("/home" if me(request) else "/login", 303)

  @app.get("/login", response_class=HTMLResponse)
  def login_page(request: Request):
    return page(request, "login.html")

  @app.post("/register", response_class=HTMLResponse)
  async def register(request: Request):
    form = await checked_form(request, 0)
    sid = text(form, "student_id").strip()
    if not sid or len(sid) > 64 or not sid.replace("-", "").replace("_", "").isalnum():
      return error(request, 400, "Student ID: 1-64 letters, digits, '-' or '_'.")
    if store.player_by_student(sid):
      return error(request, 409, "This student ID is already registered: sign in with the "
                                 "secret you were given.")
    secret = security.new_secret()
    digest, salt = security.hash_secret(secret)
    pid = spend(form, lambda: store.add_player(sid, digest, salt))
    resp = page(request, "secret.html", store.player(pid), secret=secret)
    resp.set_cookie(security.COOKIE, security.sign_cookie(key, pid), httponly=True,
                    samesite="lax", max_age=security.COOKIE_MAX_AGE)
    return resp

  @app.post("/login", response_class=HTMLResponse)
  async def login(request: Request):
    form = await checked_form(request, 0)
    player = store.player_by_student(text(form, "student_id").strip())
    if player is None or not security.check_secret(text(form, "secret"), player["secret_hash"],
                                                   player["salt"]):
      return error(request, 401, "Unknown student ID or wrong secret.")
    spend(form, lambda: None)
    resp = RedirectResponse("/home", 303)
    resp.set_cookie(security.COOKIE, security.sign_cookie(key, player["id"]), httponly=True,
                    samesite="lax", max_age=security.COOKIE_MAX_AGE)
    return resp

  @app.post("/logout")
  async def logout(request: Request):
    player = me(request)
    if player:
      spend(await checked_form(request, player["id"]), lambda: None)
    resp = RedirectResponse("/login", 303)
    resp.delete_cookie(security.COOKIE)
    return resp

  @app.get("/survey", response_class=HTMLResponse)
  def survey_page(request: Request):
    player = me(request)
    if player is None:
      return RedirectResponse("/login", 303)
    return page(request, "survey.html", player, survey=SURVEY)

  @app.post("/survey", response_class=HTMLResponse)
  async def survey(request: Request):
    player = me(request)
    if player is None:
      return RedirectResponse("/login", 303)
    form = await checked_form(request, player["id"])
    answers = {}
    for k, (_, options) in SURVEY.items():
      vals = form.getlist(k)
      if not vals or any(v not in options for v in vals) or (k != "networks" and len(vals) > 1):
        return error(request, 400, "Please answer every survey question.", player)
      answers[k] = vals if k == "networks" else vals[0]
    spend(form, lambda: store.set_survey(player["id"], answers))
    return RedirectResponse("/home", 303)

  # ------------------------------------------------------------ home, sessions
  @app.get("/home", response_class=HTMLResponse)
  def home(request: Request):
    player = me(request)
    if player is None:
      return RedirectResponse("/login", 303)
    if player["survey"] is None:
      return RedirectResponse("/survey", 303)
    sessions = [engine.view(s["id"]) for s in store.sessions_of(player["id"])]
    return page(request, "home.html", player, sessions=sessions,
                trained=engine.networks_trained(player["id"]))

  @app.post("/sessions")
  async def new_session(request: Request):
    player = me(request)
    if player is None:
      return RedirectResponse("/login", 303)
    form = await checked_form(request, player["id"])
    if player["survey"] is None:
      return error(request, 403, "Please answer the survey before starting a game (it takes a "
                                 "minute and is asked once).", player, link=("/survey", "Survey"))
    sid = spend(form, lambda: engine.new_session(player["id"]))
    pool.submit_baseline(store.session(sid)["dataset"])
    return RedirectResponse(f"/session/{sid}", 303)

  @app.get("/session/{sid}", response_class=HTMLResponse)
  def session_page(request: Request, sid: str):
    player, sid, refusal = owned(request, sid)
    if refusal:
      return refused(request, player, refusal)
    view = engine.view(sid)
    name = "stage1.html" if view["status"] == "stage1" else "stage2.html"
    return page(request, name, player, v=view, queue_pos=pool.position(sid),
                svg=curves_svg(view["history"]), settings=engine.settings)

  @app.get("/session/{sid}/status")
  def session_status(request: Request, sid: str):
    """What the page polls while an epoch trains (JSON, errors included)."""
    _, sid, refusal = owned(request, sid)
    if refusal:
      return JSONResponse({"error": refusal[1]}, refusal[0])
    v = engine.view(sid)
    return {"status": v["status"], "epochs": v["epochs"], "queue": pool.position(sid),
            "baseline": v["baseline"]}

  @app.get("/session/{sid}/plot.svg")
  def session_plot(request: Request, sid: str):
    player, sid, refusal = owned(request, sid)
    if refusal:
      return refused(request, player, refusal)
    return Response(curves_svg(engine.view(sid)["history"]), media_type="image/svg+xml")

  @app.post("/session/{sid}/configure", response_class=HTMLResponse)
  async def configure(request: Request, sid: str):
    player, sid, refusal = owned(request, sid)
    if refusal:
      return refused(request, player, refusal)
    form = await checked_form(request, player["id"])
    spend(form, lambda: engine.configure(sid, *(text(form, k, None) for k in
                                               ("width", "lr", "depth", "dropout"))))
    pool.submit_epoch(sid)
    return RedirectResponse(f"/session/{sid}", 303)

  @app.post("/session/{sid}/act", response_class=HTMLResponse)
  async def act(request: Request, sid: str):
    player, sid, refusal = owned(request, sid)
    if refusal:
      return refused(request, player, refusal)
    form = await checked_form(request, player["id"])
    moves = {k: text(form, f"move_{k}", "same") for k in rules.HP_ORDER}
    spend(form, lambda: engine.act(sid, text(form, "action"), moves))
    pool.submit_epoch(sid)
    return RedirectResponse(f"/session/{sid}", 303)

  @app.get("/leaderboard", response_class=HTMLResponse)
  def leaderboard(request: Request):
    return page(request, "leaderboard.html", me(request), board=engine.leaderboard())

  @app.get("/healthz")
  def healthz():
    return {"ok": True}

  return app
