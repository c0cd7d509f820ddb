"""CPU per verified break-glass grant, the figures services/policy/README.md quotes: a grant the verifier sees for
the first time (ES256 signature + claims) and one it has verified before (the claims only; the signature's
verification is remembered).

Run: `uv run python services/policy/bench/break_glass_cost.py` (three rounds of 2,000 verifications).
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from ig_policy.breakglass import BreakGlassVerifier, issue_grant, parse_approvers, write_approver_key
from ig_policy.domain.model import Actor, BreakGlass, Context, DecisionRequest, Resource

ROUNDS, PER_ROUND = 3, 2000


def main() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with tempfile.TemporaryDirectory() as scratch:
        entry = write_approver_key(Path(scratch) / "carol.key", key)
        trust = parse_approvers({"tenants": {"alpha": {"maxGrantMinutes": 30,
                                                       "approvers": [{"name": "carol", **entry}]}}}, Path(scratch))
    now = datetime(2026, 1, 10, 12, tzinfo=UTC)
    scope = {"resource_type": "case", "resource_id": "*", "action": "read", "classification": "*"}
    token = issue_grant(key, approver="carol", subject="u-alice", tenant="alpha", scope=scope,
                        justification="P1 incident INC-4711 customer outage", ttl=timedelta(minutes=15), now=now)
    request = DecisionRequest(Actor("u-alice", "alpha", ("oncall",)),
                              Resource("case", "case-1", "alpha", "", "region-a", "internal"), "read",
                              Context(now, "corp", "high", 10, "mfa", "region-a", BreakGlass(grant=token)))
    verifier = BreakGlassVerifier(trust)
    checked = verifier.check(request, now)
    assert checked is not None and checked.check == "verified"
    for round_ in range(1, ROUNDS + 1):
        verifiers = [BreakGlassVerifier(trust) for _ in range(PER_ROUND)]  # each sees the grant first
        started = time.process_time()
        for fresh in verifiers:
            fresh.check(request, now)
        first = (time.process_time() - started) / PER_ROUND
        started = time.process_time()
        for _ in range(PER_ROUND):
            verifier.check(request, now)
        again = (time.process_time() - started) / PER_ROUND
        print(f"round {round_}: {first * 1e6:.0f} µs CPU per grant seen first, {again * 1e6:.0f} µs per grant seen "
              f"again ({len(token)}-character token)")


if __name__ == "__main__":
    main()
