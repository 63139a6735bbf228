"""The one SLO evaluator: a Slo and a Pool of measurements in, one Term per bound out.

Pure. `crestline run --slo` checks the whole run with `check`; the search's step judge
(crestline.search.judge) reads the same terms and adds its sequential test; reports read the
bounds back from a result with crestline.slo.parse.slo_from_dict.
"""

from __future__ import annotations

from crestline.slo.bound import Pool, Term
from crestline.slo.parse import Slo


def evaluate(slo: Slo, pool: Pool) -> list[Term]:
    """Each bound of slo evaluated on pool, in the SLO's order."""
    return [b.evaluate(pool) for b in slo.bounds]


def check(slo: Slo, pool: Pool) -> dict:
    """{"slo": slo.to_dict(), "met": bool, "why": [one line per term]}: the `--out` JSON's
    slo, slo_met and slo_why. An unmeasured term is not met: an --assert gate must not pass
    on nothing."""
    terms = evaluate(slo, pool)
    return {"slo": slo.to_dict(), "met": all(t.met is True for t in terms),
            "why": [t.text for t in terms]}
