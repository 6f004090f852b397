"""Server-issued secrets, HMAC-signed cookies, per-form CSRF tokens and one-time nonces.

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
    ok = hmac.compare_digest(mac, _mac(key, f"cookie:{pid}.{issued}"))
    fresh = (now or time.time()) - int(issued) < COOKIE_MAX_AGE
    return int(pid) if ok and fresh else None
  except (AttributeError, ValueError):
    return None


def csrf_token(key, player_id, nonce):
  """Binds a form's nonce to the signed-in player (0 for the sign-in forms)."""
  return _mac(key, f"csrf:{player_id}:{nonce}")


def check_csrf(key, player_id, nonce, token):
  return bool(nonce and token) and hmac.compare_digest(csrf_token(key, player_id, nonce), token)


def new_nonce():
  return secrets.token_urlsafe(16)
