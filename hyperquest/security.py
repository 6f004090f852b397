"""Server-issued secrets, HMAC-signed cookies, per-form expiring CSRF tokens and one-time nonces.

Only the standard library (hmac, hashlib, secrets) is used. The signing key is kept in the data
directory so that cookies and open forms stay valid across a server restart.
"""
import hashlib
import hmac
import os
import secrets
import time

COOKIE = "hq_session"
COOKIE_MAX_AGE = 14 * 24 * 3600
# A form older than this is refused with "reload the page"; long enough for a game played in one
# sitting, short enough that the table of used nonces (kept this long) stays small.
FORM_TTL = 6 * 3600


def load_key(data_dir):
  path = os.path.join(data_dir, "signing.key")
  if not os.path.exists(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
      f.write(secrets.token_hex(32))
  with open(path) as f:
    return bytes.fromhex(f.read().strip())


def new_secret():
  """The player's sign-in secret, shown once; only its salted hash is stored."""
  return secrets.token_urlsafe(9)


def hash_secret(secret, salt=None):
  salt = salt or secrets.token_hex(16)
  digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), bytes.fromhex(salt), 50_000).hex()
  return digest, salt


def check_secret(secret, digest, salt):
  return hmac.compare_digest(hash_secret(secret, salt)[0], digest)


def _mac(key, msg):
  return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()


def sign_cookie(key, player_id, now=None):
  payload = f"{player_id}.{int(now or time.time())}"
  return f"{payload}.{_mac(key, 'cookie:' + payload)}"


def read_cookie(key, value, now=None):
  """The player id in a valid, unexpired cookie, else None."""
  try:
    pid, issued, mac = value.split(".")
    ok = _same(_mac(key, f"cookie:{pid}.{issued}"), mac)
    fresh = (now or time.time()) - int(issued) < COOKIE_MAX_AGE
    return int(pid) if ok and fresh else None
  except (AttributeError, ValueError):
    return None


def form_token(key, player_id, action, now):
  """(nonce, csrf) of one form. The nonce starts with its issue time; the csrf MACs the player
  (0 for the sign-in forms), the form's action path and the nonce, so a token works for one form
  of one player until it expires. Nothing is stored until the form is submitted."""
  nonce = f"{int(now)}.{secrets.token_urlsafe(12)}"
  return nonce, _mac(key, f"csrf:{player_id}:{action}:{nonce}")


def check_form_token(key, player_id, action, nonce, token, now, ttl=FORM_TTL):
  """'ok', 'forged' (missing, altered, or another player's or another form's) or 'expired'."""
  if not (nonce and token and _same(_mac(key, f"csrf:{player_id}:{action}:{nonce}"), token)):
    return "forged"
  return "ok" if 0 <= now - issued_at(nonce) < ttl else "expired"


def issued_at(nonce):
  """The issue time of a nonce made by form_token (only call it on a verified one)."""
  return int(nonce.split(".", 1)[0])


def _same(mac, text):
  # compare_digest refuses str with non-ASCII characters (a TypeError); bytes it compares always.
  return hmac.compare_digest(mac.encode(), text.encode("utf-8", "replace"))
