"""The HyperQuest web app: FastAPI + Jinja2 pages, plain forms, a little polling.

Every POST carries a nonce and a CSRF token (HMAC of player and nonce). A token that does not
verify is "forged" (403); a nonce that was already used is "replayed" (409). Sessions belong to
their player: anyone else gets 403.
"""
import contextlib
import os

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

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


class FormError(Exception):
  def __init__(self, status, message):
    super().__init__(message)
    self.status, self.message = status, message


def create_app(data_dir, settings=None, num_workers=1):
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

  app = FastAPI(title="HyperQuest", docs_url=None, redoc_url=None, lifespan=lifespan)
  app.state.engine, app.state.pool = engine, pool

  # ------------------------------------------------------------ helpers
  def me(request):
    pid = security.read_cookie(key, request.cookies.get(security.COOKIE, ""))
    return store.player(pid) if pid else None

  def form_tokens(player_id):
    nonce = security.new_nonce()
    store.add_nonce(nonce, player_id)
    return {"nonce": nonce, "csrf": security.csrf_token(key, player_id, nonce)}

  def page(request, name, player=None, status=200, **ctx):
    pid = player["id"] if player else 0
    ctx.update(player=player, tokens=lambda: form_tokens(pid))
    return templates.TemplateResponse(request, name, ctx, status_code=status)

  def error(request, status, message, player=None):
    return page(request, "error.html", player, status=status, message=message)

  async def checked_form(request, player_id):
    form = await request.form()
    nonce, token = form.get("nonce", ""), form.get("csrf", "")
    if not security.check_csrf(key, player_id, nonce, token):
      raise FormError(403, "Form refused: its security token is missing or forged. "
                           "Reload the page and submit the form again.")
    used = store.use_nonce(nonce, player_id)
    if used == "replayed":
      raise FormError(409, "Form refused: this form was already submitted (a replayed or "
                           "double-clicked post). Reload the page to act again.")
    if used != "ok":
      raise FormError(403, "Form refused: unknown form token. Reload the page.")
    return form

  def owned(request, sid):
    player = me(request)
    if player is None:
      return None, RedirectResponse("/login", 303)
    if store.session(sid) is None:
      return None, error(request, 404, "No such session.", player)
    if store.session(sid)["player_id"] != player["id"]:
      return None, error(request, 403, "Forbidden: this session belongs to another player.",
                         player)
    return player, None

  @app.exception_handler(FormError)
  async def _form_error(request, exc):
    return error(request, exc.status, exc.message, me(request))

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
    sid = str(form.get("student_id", "")).strip()
    if not sid or len(sid) > 64 or not sid.replace("-", "").replace("_", "").isalnum():
      return error(request, 400, "Student ID: 1-64 letters, digits, '-' or '_'.")
    if store.player_by_student(sid):
      return error(request, 409, "This student ID is already registered: sign in with the "
                                 "secret you were given.")
    secret = security.new_secret()
    digest, salt = security.hash_secret(secret)
    pid = store.add_player(sid, digest, salt)
    resp = page(request, "secret.html", store.player(pid), secret=secret)
    resp.set_cookie(security.COOKIE, security.sign_cookie(key, pid), httponly=True,
                    samesite="lax", max_age=security.COOKIE_MAX_AGE)
    return resp

  @app.post("/login", response_class=HTMLResponse)
  async def login(request: Request):
    form = await checked_form(request, 0)
    player = store.player_by_student(str(form.get("student_id", "")).strip())
    if player is None or not security.check_secret(str(form.get("secret", "")),
                                                   player["secret_hash"], player["salt"]):
      return error(request, 401, "Unknown student ID or wrong secret.")
    resp = RedirectResponse("/home", 303)
    resp.set_cookie(security.COOKIE, security.sign_cookie(key, player["id"]), httponly=True,
                    samesite="lax", max_age=security.COOKIE_MAX_AGE)
    return resp

  @app.post("/logout")
  async def logout(request: Request):
    player = me(request)
    if player:
      await checked_form(request, player["id"])
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
    store.set_survey(player["id"], answers)
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
    await checked_form(request, player["id"])
    sid = engine.new_session(player["id"])
    pool.submit_baseline(store.session(sid)["dataset"])
    return RedirectResponse(f"/session/{sid}", 303)

  @app.get("/session/{sid}", response_class=HTMLResponse)
  def session_page(request: Request, sid: int):
    player, denied = owned(request, sid)
    if denied:
      return denied
    view = engine.view(sid)
    name = "stage1.html" if view["status"] == "stage1" else "stage2.html"
    return page(request, name, player, v=view, queue_pos=pool.position(sid),
                svg=curves_svg(view["history"]), settings=engine.settings)

  @app.get("/session/{sid}/status")
  def session_status(request: Request, sid: int):
    _, denied = owned(request, sid)
    if denied:
      return JSONResponse({"error": "forbidden"}, denied.status_code)
    v = engine.view(sid)
    return {"status": v["status"], "epochs": v["epochs"], "queue": pool.position(sid),
            "baseline": v["baseline"]}

  @app.get("/session/{sid}/plot.svg")
  def session_plot(request: Request, sid: int):
    _, denied = owned(request, sid)
    if denied:
      return denied
    return Response(curves_svg(engine.view(sid)["history"]), media_type="image/svg+xml")

  @app.post("/session/{sid}/configure", response_class=HTMLResponse)
  async def configure(request: Request, sid: int):
    player, denied = owned(request, sid)
    if denied:
      return denied
    form = await checked_form(request, player["id"])
    try:
      engine.configure(sid, form.get("width"), form.get("lr"), form.get("depth"),
                       form.get("dropout"))
    except (RuleError, TypeError, ValueError) as e:
      return error(request, 400, f"Refused: {e}", player)
    pool.submit_epoch(sid)
    return RedirectResponse(f"/session/{sid}", 303)

  @app.post("/session/{sid}/act", response_class=HTMLResponse)
  async def act(request: Request, sid: int):
    player, denied = owned(request, sid)
    if denied:
      return denied
    form = await checked_form(request, player["id"])
    moves = {k: form.get(f"move_{k}", "same") for k in rules.HP_ORDER}
    try:
      engine.act(sid, form.get("action", ""), moves)
    except RuleError as e:
      return error(request, 400, f"Refused: {e}", player)
    pool.submit_epoch(sid)
    return RedirectResponse(f"/session/{sid}", 303)

  @app.get("/leaderboard", response_class=HTMLResponse)
  def leaderboard(request: Request):
    return page(request, "leaderboard.html", me(request), board=engine.leaderboard())

  @app.get("/healthz")
  def healthz():
    return {"ok": True}

  return app
