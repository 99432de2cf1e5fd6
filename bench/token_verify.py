#!/usr/bin/env python3
"""Token verification speed: kyso's hardened path against bare python-jose, same token.

One ES256 key set and one RFC 9068 access token (level 2, two audiences, the claims the OIDC
provider issues) are made with the real clock. Then, in one process, ``--rounds`` rounds of
``--ops`` verifications of that same token run through

* **jose**: ``jose.jwt.decode(token, prepared_key, algorithms=["ES256"], audience=API)`` with
  the key prepared once (``CryptographyECKey``) — the cheapest correct python-jose call, with
  none of the checks python-jose skips (kid, typ, required exp/aud, header parameters);
* **kyso**: ``kyso.authn.tokens.verify(token, keys, typ="at+jwt", issuer=…, audience=…,
  clock=…)`` — every check of the hardened path;
* **rp**: ``kyso.authn.rp.TokenVerifier.verify(token, audience=…, min_level=2)`` — the
  relying-party call a backend service makes (hardened path + acr level, amr, auth_time,
  client_id checks), with keys from the public JWKS.

The order of the contenders rotates every round. The verdict compares median per-round rates:
kyso (and rp) must reach at least 80 % of jose's rate. ``--profile`` runs cProfile on the
kyso contender instead. Run ``python3 bench/token_verify.py [--ops N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable

import cryptography
from jose import jwt as jose_jwt
from jose.backends.cryptography_backend import CryptographyECKey

from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.keys import KeySet
from kyso.authn.registry import Level
from kyso.authn.rp import TokenVerifier
from kyso.authn.tokens import TokenType, issue, verify
from kyso.clock import SystemClock

ISSUER = "https://id.thainguyen.gov.vn"
API = "hotich-api"
TARGET = 0.80


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=2000, help="verifications per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--profile", action="store_true", help="cProfile the kyso contender")
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args()
    if args.ops < 1 or args.rounds < 1:
        parser.error("need --ops ≥ 1 and --rounds ≥ 1")

    clock = SystemClock()
    keys = KeySet.create(clock)
    token = issue(keys, typ=TokenType.ACCESS, issuer=ISSUER, subject="u-Qm9uZ1RoYW5oTmdvYw",
                  audience=[API, "dichvucong-api"], lifetime=dt.timedelta(minutes=30),
                  clock=clock, claims={"client_id": "dichvucong-portal", "scope": "openid hotich",
                                       "acr": ACR_LEVEL_2, "amr": ["pwd", "otp"],
                                       "auth_time": int(clock.now().timestamp())})
    prepared = CryptographyECKey(keys.current.public_key, "ES256")
    rp = TokenVerifier.from_jwks(ISSUER, keys.public_jwks(), clock)

    def jose_once() -> object:
        return jose_jwt.decode(token, prepared, algorithms=["ES256"], audience=API)

    def kyso_once() -> object:
        return verify(token, keys, typ=TokenType.ACCESS, issuer=ISSUER, audience=API,
                      clock=clock)

    def rp_once() -> object:
        return rp.verify(token, audience=API, min_level=Level.TWO)

    contenders: dict[str, Callable[[], object]] = {"jose": jose_once, "kyso": kyso_once,
                                                    "rp": rp_once}
    for once in contenders.values():  # each must accept the token before it is timed
        once()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.ops):
            kyso_once()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile_top)
        return 0

    for once in contenders.values():  # warm-up
        for _ in range(min(args.ops, 200)):
            once()
    per_op: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            once = contenders[name]
            start = time.perf_counter()
            for _ in range(args.ops):
                once()
            per_op[name].append((time.perf_counter() - start) / args.ops)
    med = {name: statistics.median(v) for name, v in per_op.items()}
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, "
          f"cryptography {cryptography.__version__}, token {len(token)} bytes, "
          f"{args.rounds} rounds × {args.ops} verifications")
    for name in names:
        print(f"  {name:5}  {1e6 * med[name]:7.1f} µs/op  {1 / med[name]:9.0f} ops/s"
              f"   (best round {1e6 * min(per_op[name]):.1f} µs)")
    ok = True
    for name in ("kyso", "rp"):
        ratio = med["jose"] / med[name]
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        ok = ok and ratio >= TARGET
        print(f"  {name} rate / jose rate: {ratio:.2f} (target ≥ {TARGET:.2f}): {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
