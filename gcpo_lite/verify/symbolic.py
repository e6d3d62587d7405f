"""The sympy half of an answer comparison, run in a verifier worker process (workers.py) under a hard time
limit: LaTeX translated by latex.py, values compared as Precision says (exactly, or within REL_TOL when an
answer has a decimal), expressions with free symbols at random points, relations by the ratio of their sides.
equivalence.py decides everything it can without sympy first.

Values are mpmath numbers, whose exponent has no bound: 10^{-400} is not 0 and 10^{999999999} is not inf, so
two huge or two tiny values are never equal for having overflowed or underflowed alike."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Optional

from gcpo_lite.verify.equivalence import REL_TOL, compare, fast_scalar, structure, unassign

BASE_DIGITS = 30  # significant digits a value is evaluated to, plus one per digit written in the two answers
NOISE_BITS = 10  # evalf's part known to fewer bits is what a cancellation left (sin^2+cos^2-1 -> 0.e-164): 0
_DECIMAL = re.compile(r"\d\.|\.\d")  # 0.5, .5, 5.: a rounded value


@dataclass(frozen=True)
class Precision:
    """How two answers' values are compared. With a decimal in either answer (a rounded value: 0.333333 ~
    1/3), within REL_TOL; otherwise exactly, up to the evaluation's own error: `digits` grows with the digits
    written, so 999999999e and 999999998e (1e-9 apart) differ."""

    digits: int
    approximate: bool

    @classmethod
    def of(cls, a: str, b: str) -> "Precision":
        written = sum(c.isdigit() for c in a + b)
        return cls(BASE_DIGITS + written, bool(_DECIMAL.search(a) or _DECIMAL.search(b)))

    def value(self, expr, point=None):
        """expr (at point) as an mpmath complex to `digits` digits; None when it is not a finite number."""
        import mpmath
        import sympy as sp

        value = expr.evalf(self.digits, subs=point) if point else expr.evalf(self.digits)
        if not value.is_number or value.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            return None
        parts = []
        with mpmath.workdps(self.digits + 10):
            for part in value.as_real_imag():
                if not part.is_Number:
                    return None
                noise = isinstance(part, sp.Float) and part._prec < NOISE_BITS
                parts.append(mpmath.mpf(0) if noise else mpmath.mpf(part))
            z = mpmath.mpc(*parts)
        return z if mpmath.isfinite(z) else None

    def close(self, x, y) -> bool:
        import mpmath

        with mpmath.workdps(self.digits + 10):
            tol = mpmath.mpf(REL_TOL) if self.approximate else mpmath.mpf(10) ** (10 - self.digits)
            return bool(abs(x - y) <= tol * max(abs(x), abs(y)))  # 0 is close to 0 only

    def ratio(self, x, y):
        import mpmath

        with mpmath.workdps(self.digits + 10):
            return x / y


def _random_points(symbols, n: int = 5, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        yield {s: rng.uniform(0.3, 2.7) * rng.choice((1, -1)) for s in symbols}


def _constants_equal(a, b, prec: Precision) -> bool:
    import sympy as sp

    if a.has(sp.oo, -sp.oo, sp.zoo) or b.has(sp.oo, -sp.oo, sp.zoo):
        return sp.simplify(a - b) == 0 if not (a.is_infinite or b.is_infinite) else a == b
    if a.is_Integer and b.is_Integer or (a.is_Rational and b.is_Rational and not prec.approximate):
        return False  # two different exact numbers (a == b was asked first)
    va, vb = prec.value(a), prec.value(b)
    return va is not None and vb is not None and prec.close(va, vb)


def exprs_equal(a, b, prec: Precision) -> bool:
    import sympy as sp

    if a == b:
        return True
    symbols = a.free_symbols | b.free_symbols  # not (a - b)'s: sympy would expand 10^{10^9} - 10^{10^9 - 1}
    if not symbols:
        return _constants_equal(a, b, prec)
    agree = 0
    for point in _random_points(symbols):
        va, vb = prec.value(a, point), prec.value(b, point)
        if va is None or vb is None:
            continue
        if not prec.close(va, vb):
            return False
        agree += 1
    if agree >= 3:  # equal at >= 3 random points: an identity for answer-sized expressions
        return True
    return sp.simplify(a - b) == 0


def relations_equal(a, b, prec: Precision) -> bool:
    """x+y=3 ~ 3=y+x ~ 2x+2y=6; x>3 ~ 3<x ~ 2x>6. Equations match up to a nonzero factor, inequalities
    (after turning > into <) up to a positive one."""
    flip = {">": "<", ">=": "<="}
    da = (a.rhs - a.lhs) if a.op in flip else (a.lhs - a.rhs)
    db = (b.rhs - b.lhs) if b.op in flip else (b.lhs - b.rhs)
    if flip.get(a.op, a.op) != flip.get(b.op, b.op):
        return False
    symbols = da.free_symbols | db.free_symbols
    if not symbols:
        return False  # two constant relations ("1 < 2") are not answers worth matching
    ratios = []
    for point in _random_points(symbols):
        va, vb = prec.value(da, point), prec.value(db, point)
        if va is None or vb is None or vb == 0:
            continue
        ratios.append(prec.ratio(va, vb))
    if len(ratios) < 3 or ratios[0] == 0 or not all(prec.close(r, ratios[0]) for r in ratios):
        return False
    return a.op == "=" or (abs(ratios[0].imag) < 1e-12 and ratios[0].real > 0)  # x<3 ~ 2x<6, not -x<-3


def sympy_scalar(a: str, b: str) -> Optional[bool]:
    """Definitive scalar check: cheap paths, then sympy. Runs inside a worker process."""
    fast = fast_scalar(a, b)
    if fast is not None:
        return fast
    a, b = unassign(a, b)
    from gcpo_lite.verify.latex import ParseError, Relation, parse_latex

    try:
        ea, eb = parse_latex(a), parse_latex(b)
    except (ParseError, RecursionError, ValueError, TypeError, ZeroDivisionError):
        return False
    prec = Precision.of(a, b)
    if isinstance(ea, Relation) or isinstance(eb, Relation):
        return isinstance(ea, Relation) and isinstance(eb, Relation) and relations_equal(ea, eb, prec)
    return exprs_equal(ea, eb, prec)


def symbolic_equal(pred: str, gold: str) -> bool:
    """The worker's job: the whole comparison with sympy for undecided elements."""
    try:
        return compare(structure(pred), structure(gold), sympy_scalar) is True
    except Exception:  # never raise: malformed input scores 0
        return False
