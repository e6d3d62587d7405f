"""The sympy half of an answer comparison, run in a verifier worker process (workers.py) under a hard time
limit: LaTeX translated by latex.py, numbers compared within REL_TOL, expressions with free symbols at random
points, relations by the ratio of their sides. equivalence.py decides everything it can without sympy first."""

from __future__ import annotations

import math
import random
from typing import Optional

from gcpo_lite.verify.equivalence import REL_TOL, compare, fast_scalar, structure, unassign


def _close(x, y) -> bool:
    return abs(x - y) <= REL_TOL * max(abs(x), abs(y)) + 1e-9


def _random_points(symbols, n: int = 5, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        yield {s: rng.uniform(0.3, 2.7) * rng.choice((1, -1)) for s in symbols}


def _numeric(expr, point=None):
    import sympy as sp

    value = expr.evalf(30, subs=point) if point else expr.evalf(30)
    value = complex(value) if value.is_number and not value.has(sp.zoo, sp.nan, sp.oo, -sp.oo) else None
    if value is None or not all(map(math.isfinite, (value.real, value.imag))):
        return None
    return value


def exprs_equal(a, b) -> bool:
    import sympy as sp

    if a == b:
        return True
    symbols = (a - b).free_symbols
    if not symbols:
        if a.has(sp.oo, -sp.oo, sp.zoo) or b.has(sp.oo, -sp.oo, sp.zoo):
            return sp.simplify(a - b) == 0 if not (a.is_infinite or b.is_infinite) else a == b
        if a.is_Integer and b.is_Integer:
            return False
        va, vb = _numeric(a), _numeric(b)
        return va is not None and vb is not None and _close(va, vb)
    agree = 0
    for point in _random_points(symbols):
        va, vb = _numeric(a, point), _numeric(b, point)
        if va is None or vb is None:
            continue
        if not _close(va, vb):
            return False
        agree += 1
    if agree >= 3:  # equal at >= 3 random points: an identity for answer-sized expressions
        return True
    return sp.simplify(a - b) == 0


def relations_equal(a, b) -> bool:
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
        va, vb = _numeric(da, point), _numeric(db, point)
        if va is None or vb is None or abs(vb) < 1e-12:
            continue
        ratios.append(va / vb)
    if len(ratios) < 3 or abs(ratios[0]) < 1e-12 or not all(_close(r, ratios[0]) for r in ratios):
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
    if isinstance(ea, Relation) or isinstance(eb, Relation):
        return isinstance(ea, Relation) and isinstance(eb, Relation) and relations_equal(ea, eb)
    return exprs_equal(ea, eb)


def symbolic_equal(pred: str, gold: str) -> bool:
    """The worker's job: the whole comparison with sympy for undecided elements."""
    try:
        return compare(structure(pred), structure(gold), sympy_scalar) is True
    except Exception:  # never raise: malformed input scores 0
        return False
