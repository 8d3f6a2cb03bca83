"""Forged and broken bearer tokens against a live server with JWT identity, run by bench/fuzz/run.sh
after schemathesis (`python3 -m bench.fuzz.tokens` from the repository root, DATABASE_URL and
COUPON_BIN set; FUZZ_PORT, FUZZ_SEED and FUZZ_TOKENS optional).

One server (lib.Server with lib.Identity's flags), one coupon of one ticket, issued to the victim with
the victim's token. Then a seeded stream of FUZZ_TOKENS (2000) tokens made from the victim's, each sent
on every user route: bits flipped in each part, truncated, parts swapped, dropped or repeated, dots
doubled, characters that are not base64url, unicode, `alg: none`, HS256 keyed with the public key,
another key under the same kid, an unknown kid, keys embedded in the header, expired, not yet valid,
another issuer or audience, a missing claim, claims and header fields of the wrong type, non-JSON
parts, over 8 KiB, empty, the admin token; and valid tokens of other users.

What each route sends, so that no answer changes the database: issue names the victim (the victim's
own token gets the same ticket again, 200); the redemption and the restore name an order id that is
not one (a valid victim token gets 400, nothing written); the two reads only read. The answers:

- a forged or broken token: 401, problem code invalid_token, `WWW-Authenticate: Bearer error="invalid_token"`;
- a valid token of another user: 403 forbidden, sent with the requests that would succeed for the
  victim (a real order id, the victim named in the issue body);
- a token that stays valid however it was made (an `aud` list, `exp`/`nbf` inside the 60 s of
  leeway, no `iat` or `typ`, exactly 8 KiB): the victim's answer (200, or 400 on the two writes);
- a token the documents leave open (a signature re-encoded with other spare bits or padded, the
  other ECDSA `s`, an `iat` of any type, an `exp` beyond 2^63, an `nbf` far in the past, an `aud`
  list with a number, claims JSON with a BOM, whitespace between the scheme and the token): the
  victim's answer or 401, each counted in the output;
- a claim or header field named twice, or `crit` naming an extension: 401, as RFC 7515/7519 allow
  (found by this fuzzer: the server took the first value and ignored `crit`).

Never 5xx, never no answer. Then: the server still runs, and the database is unchanged (the coupon's
audit, the victim's ticket not redeemed, every held ticket of the database the same as before the
stream). Exits non-zero when a check fails. FUZZ_SEED seeds the stream's choices; the keys and the
ECDSA signatures are new each run, and the choices made on a token's characters follow them, so two
runs with one seed make the same kinds of tokens, not the same tokens.

"""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import re
import sys
import time
from collections import Counter

from bench import lib

PORT = int(os.environ.get("FUZZ_PORT", "8391"))
VICTIM = "victim-1"
OTHERS = ["other-1", "Victim-1", "victim-10", "victim-1.", "victim", "admin", "victim-1:x", "root@victim-1"]
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
UNICODE = ["é", "ü", "∑", "😀", "\u200b", "\u202e", "\ufeff", "ｖ", "і", "\u00a0", "ß", "☃"]
NOT_BASE64 = "!\"#$%&'()*+,/:;<=>?@[\\]^`{|}~ "
# Curve order of P-256: (r, n - s) is the same signature's twin.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
BAD, OTHER, GOOD, LENIENT = "bad", "other", "good", "lenient"
DROP = object()


def b64decode_strict(text):
    """The bytes of base64url `text` (padding tolerated, spare bits ignored), None when it is not base64url."""
    text = text.rstrip("=") if re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", text) else None
    if text is None or len(text) % 4 == 1:
        return None
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Forge:
    """The stream's tokens, made from the victim's, each with its class: BAD, OTHER, GOOD or LENIENT
    (see the module's docstring). Each kind_ method makes one kind."""

    def __init__(self, identity, rng):
        from cryptography.hazmat.primitives import serialization
        self.identity, self.rng = identity, rng
        with open(identity.jwks, "rb") as f:
            jwks = f.read()
        self.intruder = lib.Identity(kid=identity.kid)  # another key under the same kid
        public = identity.key.public_key()
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        self.secrets = [json.dumps(identity.jwk).encode(), json.dumps({"keys": [identity.jwk]}).encode(),
                        public.public_bytes(serialization.Encoding.PEM, spki),
                        public.public_bytes(serialization.Encoding.PEM, spki).strip(),
                        public.public_bytes(serialization.Encoding.DER, spki),
                        public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint),
                        identity.jwk["x"].encode(), jwks]
        self.kinds = [(name[5:], getattr(self, name)) for name in sorted(dir(self)) if name.startswith("kind_")]

    # Building blocks -------------------------------------------------------------------------------

    def now(self):
        return int(time.time())

    def header(self, **fields):
        return {k: v for k, v in {"alg": "ES256", "kid": self.identity.kid, "typ": "JWT", **fields}.items() if v is not DROP}

    def claims(self, **fields):
        now = self.now()
        fields = {"iss": lib.Identity.ISSUER, "aud": lib.Identity.AUDIENCE, "sub": VICTIM, "iat": now, "exp": now + 3600, **fields}
        return {k: v for k, v in fields.items() if v is not DROP}

    def signed(self, header=None, claims=None, key=None):
        """header.claims signed with ES256 by `key` (the identity's); dicts as JSON, str or bytes as they are."""
        encode = lambda part: lib.b64url(part if isinstance(part, (str, bytes)) else json.dumps(part))
        return (key or self.identity).sign(encode(self.header() if header is None else header) + "."
                                           + encode(self.claims() if claims is None else claims))

    def good(self):
        return self.signed()

    def classify(self, token, good):
        """A blind mutation of `good`: GOOD when it is `good`, LENIENT when only the signature's encoding
        changed (spare bits, padding), BAD otherwise."""
        if token == good:
            return GOOD
        parts, original = token.split("."), good.split(".")
        same = len(parts) == 3 and parts[:2] == original[:2] and b64decode_strict(parts[2]) == b64decode_strict(original[2])
        return LENIENT if same else BAD

    def blind(self, mutate):
        good = self.good()
        token = mutate(good)
        return token, self.classify(token, good)

    def pick(self, values):
        return values[self.rng.randrange(len(values))]

    # The kinds: each returns (token, class), some a label and the class RFC 7515/7519 give too ----

    def kind_flip_character(self):
        """One base64url character of a part turned into another, by a flipped bit of its 6."""
        def mutate(token):
            parts = token.split(".")
            p = self.rng.randrange(3)
            i = self.rng.randrange(len(parts[p]))
            c = BASE64URL[BASE64URL.index(parts[p][i]) ^ (1 << self.rng.randrange(6))]
            parts[p] = parts[p][:i] + c + parts[p][i + 1:]
            return ".".join(parts)
        return self.blind(mutate)

    def kind_flip_ascii_bit(self):
        """A bit of one printable character flipped (kept printable): may leave base64url."""
        def mutate(token):
            while True:
                i = self.rng.randrange(len(token))
                c = chr(ord(token[i]) ^ (1 << self.rng.randrange(7)))
                if " " <= c <= "~":
                    return token[:i] + c + token[i + 1:]
        return self.blind(mutate)

    def kind_flip_decoded_bit(self):
        """A bit of a part's bytes flipped, the part encoded again."""
        def mutate(token):
            parts = token.split(".")
            p = self.rng.randrange(3)
            data = bytearray(b64decode_strict(parts[p]))
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
            parts[p] = lib.b64url(bytes(data))
            return ".".join(parts)
        return self.blind(mutate)

    def kind_spare_bits(self):
        """The last character of the signature with its spare bits set: the same bytes, another string."""
        def mutate(token):
            value = BASE64URL.index(token[-1]) | self.rng.randrange(1, 16)
            return token[:-1] + BASE64URL[value]
        return self.blind(mutate)

    def kind_truncated(self):
        return self.blind(lambda token: token[:self.rng.randrange(len(token))])

    def kind_parts_rearranged(self):
        """Parts swapped, dropped or repeated."""
        def mutate(token):
            parts = token.split(".")
            while True:
                order = [self.rng.randrange(3) for _ in range(self.rng.randrange(1, 5))]
                if order != [0, 1, 2]:
                    return ".".join(parts[i] for i in order)
        return self.blind(mutate)

    def kind_dots(self):
        """Dots doubled, added at either end or between characters."""
        def mutate(token):
            choice = self.rng.randrange(4)
            if choice == 0:
                return token.replace(".", "..", 1) if self.rng.random() < 0.5 else token.replace(".", "..")
            if choice == 1:
                return self.pick([".", "..", "...."]) + token if self.rng.random() < 0.5 else token + self.pick([".", ".."])
            if choice == 2:
                return self.pick(["", ".", "..", "...", "....", "a.b", "a.b.c", "..c", "a..", ".b."])
            i = self.rng.randrange(len(token) + 1)
            return token[:i] + "." + token[i:]
        return self.blind(mutate)

    def kind_not_base64(self):
        """A character outside base64url put in, or a part in standard base64 with padding."""
        def mutate(token):
            if self.rng.random() < 0.3:
                parts = token.split(".")
                p = self.rng.randrange(3)
                parts[p] = base64.b64encode(b64decode_strict(parts[p])).decode()
                return ".".join(parts)
            i = self.rng.randrange(len(token) + 1)
            return token[:i] + self.pick(NOT_BASE64) * self.rng.randrange(1, 3) + token[i:]
        return self.blind(mutate)

    def kind_padding(self):
        return self.blind(lambda token: token + self.pick(["=", "=="]))

    def kind_unicode(self):
        def mutate(token):
            i = self.rng.randrange(len(token) + 1)
            return token[:i] + self.pick(UNICODE) + token[i:]
        return self.blind(mutate)

    def kind_unicode_signed(self):
        """A signed token with unicode where an ASCII value belongs."""
        field, value = self.pick([("sub", "víctim-1"), ("sub", "vіctim-1"), ("sub", "ｖｉｃｔｉｍ-1"), ("sub", VICTIM + "\u200b"),
                                  ("iss", lib.Identity.ISSUER + "\u200b"), ("aud", "coupon-servіce"), ("kid", "k\u0131")])
        if field == "kid":
            return self.signed(header=self.header(kid=value)), BAD
        return self.signed(claims=self.claims(**{field: value})), BAD

    def kind_empty(self):
        return self.pick(["", " ", "\t", None]), BAD

    def kind_admin_token(self):
        return lib.ADMIN_TOKEN, BAD

    def kind_alg_none(self):
        head = {"alg": self.pick(["none", "None", "NONE", "nOnE"]), "typ": "JWT"}
        if self.rng.random() < 0.5:
            head["kid"] = self.identity.kid
        body = lib.b64url(json.dumps(head)) + "." + lib.b64url(json.dumps(self.claims()))
        return body + self.pick(["", ".", "." + self.good().split(".")[2], ".AAAA"]), BAD

    def kind_hmac_with_public_key(self):
        """HS256/384/512 keyed with the public key in one of its encodings (algorithm confusion)."""
        alg, digest = self.pick([("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512)])
        head = self.header(alg=alg, kid=self.pick([self.identity.kid, DROP]))
        body = lib.b64url(json.dumps(head)) + "." + lib.b64url(json.dumps(self.claims()))
        return body + "." + lib.b64url(hmac.new(self.pick(self.secrets), body.encode(), digest).digest()), BAD

    def kind_another_key(self):
        """Signed by another key: under the same kid, an unknown one, none, or the key embedded in the header."""
        jwk = {k: v for k, v in self.intruder.jwk.items() if k != "kid"}
        head = self.pick([self.header(), self.header(kid="k2"), self.header(kid=DROP), self.header(jwk=jwk),
                          self.header(jku="https://attacker.example/jwks.json"), self.header(jwk=jwk, kid=DROP),
                          self.header(x5u="https://attacker.example/cert.pem")])
        return self.signed(header=head, key=self.intruder), BAD

    def kind_unknown_kid(self):
        kid = self.pick(["k2", "", "K1", "k1 ", " k1", "k1\u0000", "../k1", "k1" * 500, 1, True, None, ["k1"], {"kid": "k1"}])
        return self.signed(header=self.header(kid=kid)), BAD

    def kind_wrong_alg(self):
        alg = self.pick(["es256", "ES256 ", "ES384", "ES512", "RS256", "PS256", "EdDSA", "HS256", "ES256K", "",
                         256, None, True, ["ES256"], {"alg": "ES256"}, DROP])
        return self.signed(header=self.header(alg=alg)), BAD

    def kind_expired(self):
        now = self.now()
        return self.signed(claims=self.claims(exp=self.pick([now - self.rng.randint(90, 10 ** 8), 0, -1, -1e300, 1]))), BAD

    def kind_not_yet_valid(self):
        return self.signed(claims=self.claims(nbf=self.now() + self.rng.randint(90, 10 ** 8))), BAD

    def kind_wrong_issuer(self):
        iss = self.pick(["", lib.Identity.ISSUER + "/", lib.Identity.ISSUER.upper(), "https://attacker.example",
                         lib.Identity.ISSUER + " ", 5, None, True, [lib.Identity.ISSUER], {"iss": lib.Identity.ISSUER}, DROP])
        return self.signed(claims=self.claims(iss=iss)), BAD

    def kind_wrong_audience(self):
        aud = self.pick(["", lib.Identity.AUDIENCE + "2", lib.Identity.AUDIENCE.upper(), lib.Identity.AUDIENCE + " ",
                         ["x"], [], [[lib.Identity.AUDIENCE]], 5, None, True, {"aud": lib.Identity.AUDIENCE}, DROP])
        return self.signed(claims=self.claims(aud=aud)), BAD

    def kind_claim_types(self):
        """exp, nbf or sub missing or of the wrong type, or a sub that is no user id."""
        now = self.now()
        field, value = self.pick([
            ("exp", DROP), ("exp", str(now + 3600)), ("exp", None), ("exp", True), ("exp", [now + 3600]), ("exp", {"v": now + 3600}),
            ("nbf", "x"), ("nbf", str(now)), ("nbf", True), ("nbf", [now]), ("nbf", {}),
            ("sub", DROP), ("sub", None), ("sub", 5), ("sub", 5.5), ("sub", True), ("sub", [VICTIM]), ("sub", {"id": VICTIM}),
            ("sub", ""), ("sub", "a" * 65), ("sub", VICTIM + " "), ("sub", " " + VICTIM), ("sub", VICTIM + "\n"),
            ("sub", "vic/tim"), ("sub", "vic tim"), ("sub", "victim%2D1")])
        return self.signed(claims=self.claims(**{field: value})), BAD

    def kind_not_json(self):
        """A signed header or claims part that is not the JSON object it must be."""
        raw = self.pick([b"", b"null", b"[]", b"1", b'"text"', b"true", b"{", b"}", b"{'alg': 'ES256'}",
                         b'{"alg":"ES256",}', b"\x00", b"\xff\xfe", self.rng.randbytes(self.rng.randrange(1, 64))])
        if self.rng.random() < 0.5:
            good = json.dumps(self.header()).encode()
            raw = self.pick([raw, good + b"garbage", b"[" + good + b"]", good[:-1]])
            return self.signed(header=raw), BAD
        good = json.dumps(self.claims()).encode()
        return self.signed(claims=self.pick([raw, good + b"garbage", b"[" + good + b"]", good[:-1], b"{}"])), BAD

    def kind_huge(self):
        """Over 8 KiB: padded, a properly signed token with a large claim, or base64url noise."""
        size = self.rng.randint(8193, 60000)
        choice = self.rng.randrange(3)
        if choice == 0:
            return self.good() + "A" * (size - len(self.good())), BAD
        if choice == 1:
            return self.signed(claims=self.claims(pad="x" * size)), BAD
        return "".join(self.rng.choice(BASE64URL + ".") for _ in range(size)), BAD

    def kind_boundary(self):
        """A properly signed token of exactly 8,192 characters (kept) or 8,193 (refused)."""
        target = self.pick([8192, 8193])
        for header_pad in range(8):
            head = lib.b64url(json.dumps(self.header(pad="y" * header_pad)))
            for claims_pad in range(5800, 6300):
                claims = self.claims(pad="x" * claims_pad)
                if len(head) + len(lib.b64url(json.dumps(claims))) + 88 == target:  # 2 dots, 86 for r||s
                    return self.signed(header=self.header(pad="y" * header_pad), claims=claims), GOOD if target == 8192 else BAD
        raise AssertionError(f"no token of {target} characters")

    def kind_still_valid(self):
        """Valid however it was made: an aud list, exp and nbf inside the leeway, no iat or typ, a float exp."""
        now = self.now()
        variant = self.rng.randrange(6)
        if variant == 5:
            return self.signed(header=self.header(typ=self.pick([DROP, "at+jwt", "jwt"]))), GOOD
        return self.signed(claims=self.claims(**[
            {"aud": self.pick([[lib.Identity.AUDIENCE], ["x", lib.Identity.AUDIENCE], [lib.Identity.AUDIENCE, "y"]])},
            {"exp": now - 20}, {"nbf": now + 20}, {"iat": DROP},
            {"exp": now + 3600.5, "scope": "anything", "jti": "j-1"}][variant])), GOOD

    def kind_left_open(self):
        """What the documents leave open: the victim's answer or 401. Returns a label too, for the report."""
        now = self.now()
        variant = self.rng.randrange(8)
        if variant == 0:
            h, c, s = self.good().split(".")
            signature = b64decode_strict(s)
            twin = signature[:32] + (P256_ORDER - int.from_bytes(signature[32:], "big")).to_bytes(32, "big")
            return f"{h}.{c}.{lib.b64url(twin)}", LENIENT, "the signature's ECDSA twin (r, n - s)"
        if variant == 1:
            return (self.signed(header=self.header(crit=["x-unknown"], **{"x-unknown": 1})), BAD,
                    "crit naming an unknown extension (RFC 7515 4.1.11: refuse)")
        if variant == 2:
            iat = self.pick(["x", True, None, [now], now + 10 ** 6])
            return self.signed(claims=self.claims(iat=iat)), LENIENT, "iat of another type or in the future"
        if variant == 3:
            exp = self.pick([2 ** 63, 2 ** 64, 10 ** 30, 1e300])
            return self.signed(claims=self.claims(exp=exp)), LENIENT, "exp at 2^63 or beyond"
        if variant == 4:
            return self.signed(claims=self.claims(nbf=self.pick([-1e300, -(2 ** 63), 0]))), LENIENT, "nbf far in the past"
        if variant == 5:
            text = json.dumps(self.claims())
            text = self.pick(["\ufeff" + text, " " + text + " ", "\n" + text])
            return self.signed(claims=text), LENIENT, "claims JSON with a BOM or whitespace"
        if variant == 6:
            return self.signed(claims=self.claims(aud=[5, lib.Identity.AUDIENCE])), LENIENT, "an aud list with a number in it"
        return self.pick([" ", "  ", "\t"]) + self.good(), LENIENT, "whitespace between the scheme and the token"

    def kind_named_twice(self):
        """A claim or header field named twice (RFC 7515 5.2, RFC 7519 4: refuse, or take the last): refused
        whichever value a parser would take."""
        now = self.now()
        field, values = self.pick([("sub", ['"victim-1"', '"other-1"']), ("exp", [str(now + 3600), "1"]),
                                   ("iss", [json.dumps(lib.Identity.ISSUER), '"https://attacker.example"']),
                                   ("alg", ['"ES256"', '"none"']), ("kid", [json.dumps(self.identity.kid), '"k2"'])])
        if self.rng.random() < 0.5:
            values = values[::-1]
        in_header = field in ("alg", "kid")
        base = json.dumps({k: v for k, v in (self.header() if in_header else self.claims()).items() if k != field})
        text = base[:-1] + "".join(f', "{field}": {value}' for value in values) + "}"
        token = self.signed(header=text) if in_header else self.signed(claims=text)
        return token, BAD, f"{field} named twice"

    def kind_another_user(self):
        return self.signed(claims=self.claims(sub=self.pick(OTHERS))), OTHER

    def stream(self, count):
        """`count` tokens as (kind, token, class, label): every kind once, then kinds at random. The label
        (for the report) is the kind's when it gives none."""
        for n in range(count):
            kind, make = self.kinds[n] if n < len(self.kinds) else self.pick(self.kinds)
            token, cls, label = (*make(), None)[:3]
            yield kind, token, cls, label or kind


# The routes, and what is an answer ---------------------------------------------------------------

def routes(coupon):
    """Each user route: the request sent with the stream's tokens, the victim's answer to it (status,
    code), and the request another user's valid token is sent with (one the victim's would succeed with)."""
    ticket = f"/v1/coupons/{coupon}/tickets/{VICTIM}"
    return {
        "issue": (("POST", f"/v1/coupons/{coupon}/issue", {"user_id": VICTIM}), ("200", None),
                  ("POST", f"/v1/coupons/{coupon}/issue", {"user_id": VICTIM})),
        "ticket": (("GET", ticket, None), ("200", None), ("GET", ticket, None)),
        "redeem": (("POST", f"{ticket}/redemption", {"order_id": "no order"}), ("400", "invalid_request"),
                   ("POST", f"{ticket}/redemption", {"order_id": "o-1"})),
        "restore": (("DELETE", f"{ticket}/redemption?order_id=no%20order", None), ("400", "invalid_request"),
                    ("DELETE", f"{ticket}/redemption?order_id=o-1", None)),
        "tickets": (("GET", f"/v1/users/{VICTIM}/tickets", None), ("200", None), ("GET", f"/v1/users/{VICTIM}/tickets", None)),
    }


def outcome(status, body, fields):
    """The answer in a word: "401 invalid_token", "403 forbidden", "200 victim" (the victim's ticket or tickets only),
    "400 invalid_request",
    or what else came (status, code), with " no WWW-Authenticate" when a 401 lacks the right one."""
    code = body.get("code") if isinstance(body, dict) else None
    if status == "200":  # a ticket, or a page of them: the victim's only
        held = body.get("tickets") if isinstance(body, dict) and "tickets" in body else [body]
        users = {t.get("user_id") if isinstance(t, dict) else None for t in held or [None]}
        return "200 victim" if users == {VICTIM} else "200 other"
    word = f"{status} {code}" if code else status
    if status == "401" and fields.get("www-authenticate") != 'Bearer error="invalid_token"':
        word += " no WWW-Authenticate"
    return word


def allowed(cls, victims_answer):
    """The outcomes a token of class `cls` may get on a route whose victim's answer is `victims_answer`."""
    valid = "200 victim" if victims_answer[0] == "200" else " ".join(victims_answer)
    return {BAD: {"401 invalid_token"}, OTHER: {"403 forbidden"}, GOOD: {valid},
            LENIENT: {valid, "401 invalid_token"}}[cls]


def held_tickets():
    """Every held ticket of the database, with its redemption, as one text: the stream must not change it."""
    return lib.psql("SELECT coalesce(md5(string_agg(concat_ws('|', coupon_id, number, code, user_id, issued_at, redeemed_at, order_id), ',' "
                    "ORDER BY coupon_id, number)), '') || ' ' || count(*) FROM coupon_tickets WHERE user_id IS NOT NULL")


async def send(semaphore, route, request, token, results):
    async with semaphore:
        method, path, body = request
        status, answer, _, fields = await lib.request_async(PORT, method, path, body, token=token, timeout=20, headers=True)
        results.append((route, status, answer, fields))


async def fuzz(forge, table, count):
    """The stream on every route; returns [(kind, class, label, route, outcome, token)]."""
    semaphore = asyncio.Semaphore(32)
    answers = []

    async def one(kind, cls, label, token):
        results = []
        await asyncio.gather(*(send(semaphore, route, probe if cls != OTHER else real, token, results)
                               for route, (probe, _, real) in table.items()))
        answers.extend((kind, cls, label, route, outcome(status, body, fields), token)
                       for route, status, body, fields in results)

    pending = []
    for kind, token, cls, label in forge.stream(count):
        pending.append(asyncio.ensure_future(one(kind, cls, label, token)))
        if len(pending) >= 16:  # made just before they are sent: exp and nbf inside the leeway stay inside
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    return answers


def shown(token):
    text = "(no Authorization)" if token is None else repr(token)
    return text if len(text) <= 140 else f"{text[:100]}...{text[-30:]} ({len(token)} chars)"


def main():
    seed = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2 ** 32))
    count = int(os.environ.get("FUZZ_TOKENS", "2000"))
    print(f"tokens: {count} forged or broken bearer tokens on every user route (FUZZ_SEED={seed})", flush=True)
    check = lib.Checks("tokens")
    started = time.monotonic()
    identity = lib.Identity()
    forge = Forge(identity, random.Random(seed))
    with lib.Server(PORT, *identity.server_args(), log=True, log_level="error") as server:
        coupon = lib.create_coupon_over_http(server.base, lib.ADMIN_TOKEN, "tokens", 1)
        table = routes(coupon)
        victim = identity.token(VICTIM)
        status, body, _ = asyncio.run(lib.issue_async(PORT, coupon, None, token=victim))
        check(status == "201" and body["user_id"] == VICTIM, f"the victim's token issues the coupon's one ticket: {status}")
        # The victim's own token gets the victim's answer on every route: the 401s below are the tokens'.
        baseline = {}
        for route, (probe, _, _) in table.items():
            status, body, _, fields = asyncio.run(lib.request_async(PORT, *probe, token=victim, headers=True))
            baseline[route] = outcome(status, body, fields)
        expected = {route: next(iter(allowed(GOOD, answer))) for route, (_, answer, _) in table.items()}
        check(baseline == expected, f"the victim's valid token: {baseline}")
        before = held_tickets()

        answers = asyncio.run(fuzz(forge, table, count))

        by_route, failures, left_open = Counter(), {}, {}
        for kind, cls, label, route, got, token in answers:
            by_route[route, got] += 1
            if got not in allowed(cls, table[route][1]):
                failures.setdefault(route, []).append(f"{label} ({cls}): {got} for {shown(token)}")
            elif cls == LENIENT:
                left_open.setdefault(label, Counter())[got] += 1
        tokens = answers[::len(table)]
        print("  tokens by class: " + ", ".join(f"{cls} {n}" for cls, n in Counter(a[1] for a in tokens).most_common()))
        print("  tokens by kind: " + ", ".join(f"{kind} {n}" for kind, n in sorted(Counter(a[0] for a in tokens).items())))
        for route in table:
            print(f"  {route:8} " + ", ".join(f"{got}: {n}" for (r, got), n in sorted(by_route.items()) if r == route))
        for label, got in sorted(left_open.items()):
            print(f"  left open, {label}: " + ", ".join(f"{g}: {n}" for g, n in sorted(got.items())))
        for route in table:
            wrong = failures.get(route, [])
            total = sum(n for (r, _), n in by_route.items() if r == route)
            check(not wrong, f"{route}: {total - len(wrong)} of {total} answers as their token's class allows"
                  + "".join(f"\n      {line}" for line in wrong[:8]) + (f"\n      ... {len(wrong) - 8} more" if len(wrong) > 8 else ""))
        check(server.process.poll() is None, "the server still runs")
        health = asyncio.run(lib.request_async(PORT, "GET", "/healthz"))[0]
        check(health == "200", f"/healthz answers {health}")
        audit = lib.audit(coupon)
        check(audit.held == 1 and not audit.violations(), f"the coupon's audit: {audit}")
        row = lib.psql(f"SELECT user_id, redeemed_at IS NULL, order_id IS NULL FROM coupon_tickets "
                       f"WHERE coupon_id = {coupon} AND user_id IS NOT NULL")
        check(row == f"{VICTIM}|t|t", f"the one ticket held is the victim's, not redeemed: {row!r}")
        after = held_tickets()
        check(after == before, f"every held ticket of the database as before the stream ({after})")
    print(f"tokens: {len(answers)} answers in {time.monotonic() - started:.1f} s (FUZZ_SEED={seed})")
    return check.exit_code()


if __name__ == "__main__":
    sys.exit(main())
