"""HyperQuest web app over HTTP: sign in/out, survey, ownership, forged and replayed forms."""
import re

import pytest
from fastapi.testclient import TestClient

from hyperquest.devtools import TINY, Player, form_fields
from hyperquest.web import create_app


@pytest.fixture()
def app(tmp_path):
  return create_app(str(tmp_path), TINY)


def test_flow_ownership_forgery_and_replay(app):
  with TestClient(app, base_url="http://127.0.0.1") as c1, \
       TestClient(app, base_url="http://127.0.0.1") as c2:
    alice, bob = Player(c1, "alice"), Player(c2, "bob")
    secret = alice.register_and_survey()
    assert "You have trained 0 networks so far!" in c1.get("/home").text
    sid = alice.start()
    assert alice.wait_ready() == "ready"
    page = c1.get(f"/session/{sid}").text
    assert "Action 1 of max 60" in page and "After training 1 of max 30 epochs" in page
    assert 'id="next_lr">1.00e-02<' in page and 'data-next="3.00e-02"' in page

    # Bob can neither read nor act on Alice's session.
    bob.register_and_survey()
    assert c2.get(f"/session/{sid}").status_code == 403
    assert c2.get(f"/session/{sid}/status").status_code == 403
    bob_fields = form_fields(c2.get("/home").text, "/sessions")
    r = c2.post(f"/session/{sid}/act", data={**bob_fields, "action": "done"})
    assert r.status_code == 403 and "another player" in r.text

    # A forged token is refused; a replayed (already used) form is refused with a clear message.
    fields = form_fields(page, f"/session/{sid}/act")
    forged = {**fields, "csrf": "0" * 64, "action": "continue"}
    r = c1.post(f"/session/{sid}/act", data=forged)
    assert r.status_code == 403 and "forged" in r.text
    assert c1.post(f"/session/{sid}/act", data={**fields, "action": "continue",
                                                "move_lr": "up"}).status_code == 200
    r = c1.post(f"/session/{sid}/act", data={**fields, "action": "continue"})
    assert r.status_code == 409 and "already submitted" in r.text
    # Bob's valid token is not valid as Alice's (tokens are bound to the player).
    r = c1.post("/sessions", data=bob_fields)
    assert r.status_code == 403
    assert alice.wait_ready() == "ready"
    assert app.state.engine.view(sid)["epochs"] == 2
    assert app.state.engine.view(sid)["hp"]["lr"] == 0.03

    # A disabled ladder end is refused by the server too.
    r = alice.act("continue", wd="down")
    assert r.status_code == 400 and "bottom" in r.text

    # Sign out, then sign in again with the issued secret (and not with a wrong one).
    alice.post("/home", "/logout", {})
    assert c1.get("/home", follow_redirects=False).status_code == 303
    r = alice.post("/login", "/login", {"student_id": "alice", "secret": "wrong"})
    assert r.status_code == 401
    r = alice.post("/login", "/login", {"student_id": "alice", "secret": secret})
    assert r.status_code == 200 and "Start a dataset" in r.text
    svg = c1.get(f"/session/{sid}/plot.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and "polyline" in svg.text
    alice.act("done")
    assert "Session finished" in c1.get(f"/session/{sid}").text


def test_survey_required_and_stored(app):
  with TestClient(app, base_url="http://127.0.0.1") as c:
    p = Player(c, "carol")
    r = p.post("/login", "/register", {"student_id": "carol"})
    assert re.search(r'id="secret">[^<]{8,}<', r.text)
    assert c.get("/home", follow_redirects=False).headers["location"] == "/survey"
    r = p.post("/survey", "/survey", {"education": "PhD student"})
    assert r.status_code == 400
    r = p.post("/survey", "/survey", {"education": "Masters student", "years": "2+ years",
                                      "self_rating": "Expert",
                                      "networks": ["Recurrent neural networks",
                                                   "Networks for NLP tasks"]})
    assert r.status_code == 200
    stored = app.state.engine.store.player_by_student("carol")["survey"]
    assert '"networks": ["Recurrent neural networks", "Networks for NLP tasks"]' in stored
    # Registering the same student ID again does not hand out a new secret.
    r = p.post("/login", "/register", {"student_id": "carol"})
    assert r.status_code == 409
