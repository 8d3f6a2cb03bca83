"""Schemathesis hooks for bench/fuzz/run.sh (loaded through SCHEMATHESIS_HOOKS).

The server runs with JWT identity, and each operation gets the credential its `security` names,
through an auth provider (so schemathesis takes it for explicit auth, checks the admin routes without
it and with a wrong one, and leaves it out where a negative case drops the header):

- admin operations (adminToken): the admin token, FUZZ_ADMIN_TOKEN;
- user operations (userToken): a JWT signed with the key bench/fuzz/tokens.py saved in FUZZ_IDENTITY,
  for the user the path names (so the happy path runs, not only 403), or for issue the user the body
  names; when neither is a user id (a negative case), for the fixed user FUZZ_USER ("fuzz-user").
  Signed again just before the call, as the stateful phase fills a path's user in after the auth;
- the others (a coupon, /healthz, /readyz): none.

Two rules of the API that JSON Schema cannot state are applied to generated requests before they
are sent, so that a request schemathesis means as valid is valid:

- a sale window ends after it starts (the document says so in words; a body with ends_at <= starts_at
  gets 400 invalid_request): the two are swapped, or ends_at dropped when they are equal. A change
  (PATCH) that sets one bound clears the other, which the coupon may hold from an earlier change;
- a valid quantity near the document's maximum (1,000,000) is not wrong, only slow: the server
  generates that many ticket rows, about ten seconds each, and generators love boundaries. Valid
  quantities above 5,000 are brought down into range; invalid ones are sent as generated. The
  boundary itself is covered by CouponAPITests and RequestParserTests;
- likewise a valid `wait` of the event feed (0 to 30 seconds) holds the request that long when no
  event comes, past the request timeout: valid waits above 1 are brought down to 1. EventTests
  covers the long poll.
"""
import os
import re
import sys
from datetime import datetime
from urllib.parse import unquote

import schemathesis

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench.lib import Identity  # noqa: E402 (the repository root first)

LARGEST_SENT = 5000
MAXIMUM = 1_000_000
ADMIN_TOKEN = os.environ["FUZZ_ADMIN_TOKEN"]
IDENTITY = Identity.kept(os.environ["FUZZ_IDENTITY"])
FIXED_USER = os.environ.get("FUZZ_USER", "fuzz-user")
USER_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
ISSUED = set()  # the JWTs Credentials made, which before_call signs again for the request as sent


@schemathesis.auth(refresh_interval=None, retry_on=[])
class Credentials:
    """The bearer credential of each operation, by the security schemes openapi.yaml gives it."""

    def get(self, case, context):
        schemes = {name for requirement in context.operation.definition.raw.get("security") or [] for name in requirement}
        if "adminToken" in schemes:
            return ADMIN_TOKEN
        return user_token(case) if "userToken" in schemes else None

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def user_token(case):
    """A JWT for the user the path names (some phases hand it over percent-encoded already: "a%3Ab" is
    the user "a:b", and no user id has a "%"), else the body, else FIXED_USER."""
    user = (case.path_parameters or {}).get("user_id")
    if isinstance(user, str):
        user = unquote(user)
    elif isinstance(case.body, dict):
        user = case.body.get("user_id")
    token = IDENTITY.token(user if isinstance(user, str) and USER_ID.fullmatch(user) else FIXED_USER)
    ISSUED.add(token)
    return token


@schemathesis.hook
def before_call(context, case, **kwargs):
    # Our JWT only: a negative case's missing or broken credential, or a probe's, is sent as it is.
    if (case.headers or {}).get("Authorization", "").removeprefix("Bearer ") in ISSUED:
        case.headers["Authorization"] = f"Bearer {user_token(case)}"
    wait = (case.query or {}).get("wait")
    if type(wait) is int and 1 < wait <= 30 or isinstance(wait, str) and wait.isdigit() and 1 < int(wait) <= 30:
        case.query["wait"] = 1
    body = case.body
    if not isinstance(body, dict):
        return
    quantity = body.get("quantity")
    # JSON Schema counts 153218.0 as an integer, and so does the server.
    whole = type(quantity) is int or (type(quantity) is float and quantity.is_integer())
    if whole and LARGEST_SENT < quantity <= MAXIMUM:
        body["quantity"] = 1 + int(quantity) % LARGEST_SENT
    starts, ends = instant(body.get("starts_at")), instant(body.get("ends_at"))
    if case.method.upper() == "PATCH" and bool(starts) != bool(ends):
        body["ends_at" if starts else "starts_at"] = None
    if starts and ends and ends <= starts:
        if ends == starts:
            del body["ends_at"]
        else:
            body["starts_at"], body["ends_at"] = body["ends_at"], body["starts_at"]


def instant(value):
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
