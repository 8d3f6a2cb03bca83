"""Schemathesis hooks for bench/fuzz/run.sh (loaded through SCHEMATHESIS_HOOKS).

Two rules of the API that JSON Schema cannot state are applied to generated bodies before they are
sent, so that a body schemathesis means as valid is valid:

- a sale window ends after it starts (the document says so in words; a body with ends_at <= starts_at
  gets 400 invalid_request): the two are swapped, or ends_at dropped when they are equal;
- a valid quantity near the document's maximum (1,000,000) is not wrong, only slow: the server
  generates that many ticket rows, about ten seconds each, and generators love boundaries. Valid
  quantities above 5,000 are brought down into range; invalid ones are sent as generated. The
  boundary itself is covered by CouponAPITests and CouponRequestsTests.
"""
from datetime import datetime

import schemathesis

LARGEST_SENT = 5000
MAXIMUM = 1_000_000


@schemathesis.hook
def before_call(context, case, **kwargs):
    body = case.body
    if not isinstance(body, dict):
        return
    quantity = body.get("quantity")
    # JSON Schema counts 153218.0 as an integer, and so does the server.
    whole = type(quantity) is int or (type(quantity) is float and quantity.is_integer())
    if whole and LARGEST_SENT < quantity <= MAXIMUM:
        body["quantity"] = 1 + int(quantity) % LARGEST_SENT
    starts, ends = instant(body.get("starts_at")), instant(body.get("ends_at"))
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
