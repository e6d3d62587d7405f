"""Is a predicted final answer equal to the gold one? `math_equal(predicted, gold) -> bool`.

Order of checks (cheapest first; most pairs never reach sympy):
  1. normalize both (math_answer.normalize_answer); exact string match -> True;
  2. multiple choice: a gold letter A-E ("(C)", "\\text{(C)}") is matched by letter;
  3. structure: tuples / intervals (ordered, bracket types must agree), sets, unions and bare
     comma lists (unordered), pmatrix vectors, `x = 5` -> 5, `a \\pm b` -> {a+b, a-b};
  4. per element: plain numbers (integers and fractions exactly; with a decimal, a rounded value, on
     either side within a relative tolerance of REL_TOL; all in rationals, never floats) and word
     answers are decided here, in this process;
  5. anything else goes to sympy in a worker process (workers.py) with a hard time
     limit: LaTeX is translated by latex.py, then numeric values are compared (symbolic.py: exactly, or
     within REL_TOL when an answer has a decimal), expressions with free symbols at random points, then
     by simplify().
A timeout, a parse failure or any exception scores False: a wrong "no" costs one reward, a
hang costs the run.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction
from typing import Callable, Optional

from gcpo_lite.verify.answer import normalize_answer

REL_TOL = 1e-6  # relative tolerance for a decimal, a rounded value (0.333333 ~ 1/3, 3.14 !~ pi)
_REL_TOL = Fraction(str(REL_TOL))
MAX_SYMBOLIC_CHARS = 600  # longer answers are compared as strings only: nobody boxes a page of algebra
DEFAULT_TIMEOUT_S = 3.0  # hard wall-clock limit of the sympy part of one comparison

Scalar = Callable[[str, str], Optional[bool]]  # True / False / None (undecided)

# ---------------------------------------------------------------- structure (string level)


def split_top(s: str, seps=(",",)) -> list[str]:
    """Split on separators outside any brackets; `\\{`/`\\}` count as brackets, `\\,` does not."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            sep = next((p for p in seps if s.startswith(p, i)), None)
            if sep:
                parts.append(s[start:i])
                i += len(sep)
                start = i
                continue
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _encloses(s: str) -> bool:
    """True when the bracket opening s closes exactly at its end ((1,2) yes; (1)(2) no)."""
    depth = 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return False
    return depth == 0


# `x = 5`, `x_1 = 5`, `\theta = ...`, `f(x) = ...`, `f^{-1}(x) = ...`: the left side names the answer
_ASSIGN = re.compile(
    r"^(?:[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?(?:\^\{-1\})?(?:\([a-z]\))?|\\[a-zA-Z]+)"
    r"\s*=\s*([^=<>]+)$"
)
_MATRIX = re.compile(r"^\\begin\{[pbvBV]?matrix\}(.*)\\end\{[pbvBV]?matrix\}$", re.S)


def structure(s: str, depth: int = 0):
    """('scalar', s) | ('seq', open, close, items) | ('bag', items) | ('matrix', rows)."""
    s = s.strip()
    if depth > 20:
        return ("scalar", s)
    m = _MATRIX.match(s)
    if m:
        rows = [
            [structure(c, depth + 1) for c in split_top(r, ("&",))]
            for r in m.group(1).split("\\\\")
            if r.strip()
        ]
        return ("matrix", rows)
    if "\\cup" in s:
        parts = split_top(s, ("\\cup",))
        if len(parts) > 1:
            return ("bag", [structure(p, depth + 1) for p in parts])
    if s.startswith("\\{") and s.endswith("\\}"):
        return ("bag", [structure(p, depth + 1) for p in split_top(s[2:-2]) if p])
    items = split_top(s, (",", ";", " or ", " and "))
    if len(items) > 1:
        return ("bag", [structure(p, depth + 1) for p in items if p])
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _encloses(s):
        inner = split_top(s[1:-1])
        if len(inner) > 1:
            return ("seq", s[0], s[-1], [structure(p, depth + 1) for p in inner])
    if s.count("\\pm") == 1:
        return ("bag", [("scalar", s.replace("\\pm", "+")), ("scalar", s.replace("\\pm", "-"))])
    return ("scalar", s)


def _all(verdicts) -> Optional[bool]:
    verdicts = list(verdicts)
    if any(v is False for v in verdicts):
        return False
    return True if all(v is True for v in verdicts) else None


def _perfect_matching(table: list[list[Optional[bool]]]) -> bool:
    """Is there a one-to-one assignment of rows to columns using True cells only? (Kuhn, O(n^3))"""
    owner = [-1] * len(table)  # column -> row

    def augment(i: int, seen: list[bool]) -> bool:
        for j, ok in enumerate(table[i]):
            if ok is True and not seen[j]:
                seen[j] = True
                if owner[j] == -1 or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return all(augment(i, [False] * len(table)) for i in range(len(table)))


def _bag_equal(a: list, b: list, scalar: Scalar) -> Optional[bool]:
    """Unordered match: a perfect matching of True pairs -> True; impossible even with the undecided -> False."""
    if len(a) != len(b):
        return False
    if len(a) > 12:  # pairwise comparison is quadratic in sympy calls; long lists are compared in order
        return _all(compare(x, y, scalar) for x, y in zip(a, b))
    table = [[compare(x, y, scalar) for y in b] for x in a]
    if _perfect_matching(table):
        return True
    optimistic = [[v is not False for v in row] for row in table]  # undecided cells counted as matches
    return None if _perfect_matching(optimistic) else False


_LESS = r"(<|\\lt\b|\\leq?\b|\\leqslant\b)"
_GREATER = r"(>|\\gt\b|\\geq?\b|\\geqslant\b)"
_VAR = r"[a-zA-Z](?:_\{?\w+\}?)?"
_CHAIN = re.compile(rf"^([^<>=]+?)\s*{_LESS}\s*{_VAR}\s*{_LESS}\s*([^<>=]+)$")
_ONE_SIDED = re.compile(rf"^{_VAR}\s*(?:{_LESS}|{_GREATER})\s*([^<>=]+)$")


_STRICT = ("<", ">", "\\lt", "\\gt")


def inequality_as_interval(s: str) -> Optional[str]:
    """'x > 3' -> '(3, \\infty)', '1 \\le x < 2' -> '[1, 2)'; None for anything else."""
    m = _CHAIN.match(s.strip())
    if m:
        lo, op1, op2, hi = m.groups()
        left = "(" if op1 in _STRICT else "["
        right = ")" if op2 in _STRICT else "]"
        return f"{left}{lo.strip()}, {hi.strip()}{right}"
    m = _ONE_SIDED.match(s.strip())
    if m:
        less, greater, bound = m.groups()
        if less:
            return "(-\\infty, " + bound.strip() + (")" if less in _STRICT else "]")
        return ("(" if greater in _STRICT else "[") + bound.strip() + ", \\infty)"
    return None


def compare(a, b, scalar: Scalar) -> Optional[bool]:
    """Three-valued structural comparison of two `structure()` trees."""
    if a[0] != b[0]:
        if a[0] == "scalar" and b[0] == "seq":  # x > 3 against (3, \infty)
            interval = inequality_as_interval(a[1])
            return compare(structure(interval), b, scalar) if interval else False
        if b[0] == "scalar" and a[0] == "seq":
            interval = inequality_as_interval(b[1])
            return compare(a, structure(interval), scalar) if interval else False
        return False
    kind = a[0]
    if kind == "scalar":
        return scalar(a[1], b[1])
    if kind == "seq":
        if a[1] != b[1] or a[2] != b[2] or len(a[3]) != len(b[3]):
            return False
        return _all(compare(x, y, scalar) for x, y in zip(a[3], b[3]))
    if kind == "bag":
        return _bag_equal(a[1], b[1], scalar)
    if kind == "matrix":
        if [len(r) for r in a[1]] != [len(r) for r in b[1]]:
            return False
        return _all(compare(x, y, scalar) for ra, rb in zip(a[1], b[1]) for x, y in zip(ra, rb))
    return None


# ---------------------------------------------------------------- cheap scalar checks

_INT = re.compile(r"^[+-]?\d{1,400}$")
_DEC = re.compile(r"^[+-]?(?:\d{1,400}\.\d{0,400}|\.\d{1,400})$")
_SLASH = re.compile(r"^([+-]?\d{1,400})\s*/\s*(\d{1,400})$")
_FRAC = re.compile(r"^([+-]?)\\frac\s*\{\s*([+-]?\d{1,400})\s*\}\s*\{\s*(\d{1,400})\s*\}$")
_MATH_WORDS = {
    "sqrt",
    "frac",
    "pi",
    "infty",
    "sin",
    "cos",
    "tan",
    "sec",
    "csc",
    "cot",
    "log",
    "ln",
    "exp",
    "cdot",
    "times",
    "div",
    "binom",
    "arcsin",
    "arccos",
    "arctan",
    "sinh",
    "cosh",
    "tanh",
    "inf",
}


def plain_number(s: str) -> Optional[tuple[Fraction, bool]]:
    """(value, exact) for 12, -3.5, 3/4, \\frac{3}{4}, -\\frac{1}{2}; None for anything else. A number written
    with a decimal point is not exact: it may be rounded (0.333333 for 1/3)."""
    s = s.replace(" ", "")
    if _INT.match(s):
        return Fraction(int(s)), True
    if _DEC.match(s):
        return Fraction(s.rstrip(".") or "0"), False
    m = _SLASH.match(s)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2))), True
    m = _FRAC.match(s)
    if m and int(m.group(3)) != 0:
        value = Fraction(int(m.group(2)), int(m.group(3)))
        return (-value if m.group(1) == "-" else value), True
    return None


def numbers_equal(a: tuple[Fraction, bool], b: tuple[Fraction, bool]) -> bool:
    """Exact numbers must be equal (1000000 != 1000001, 1000000/1000001 != 1); with a decimal on either
    side, within REL_TOL. In rationals: no float to overflow (a 400-digit decimal) or underflow (1/10^13 is
    not 0)."""
    if a[0] == b[0]:
        return True
    if a[1] and b[1]:
        return False
    return abs(a[0] - b[0]) <= _REL_TOL * max(abs(a[0]), abs(b[0]))


def _is_words(s: str) -> bool:
    """A word answer ("odd", "Monday", "no solution"), compared as text."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z '\-]*", s):
        return False
    return any(len(w) >= 3 and w.lower() not in _MATH_WORDS for w in re.findall(r"[A-Za-z]+", s))


_RELATION = re.compile(r"=|<|>|\\[lg]eq?\b|\\neq?\b|\\[lg]t\b")


def unassign(a: str, b: str) -> tuple[str, str]:
    """`x = 5` against `5` compares 5 with 5; two equations (or one and an inequality) stay as they are."""
    ma, mb = _ASSIGN.match(a), _ASSIGN.match(b)
    if ma and mb:
        lhs_a, lhs_b = a.split("=", 1)[0].strip(), b.split("=", 1)[0].strip()
        return (ma.group(1).strip(), mb.group(1).strip()) if lhs_a == lhs_b else (a, b)
    if ma and not _RELATION.search(b):
        return ma.group(1).strip(), b
    if mb and not _RELATION.search(a):
        return a, mb.group(1).strip()
    return a, b


def fast_scalar(a: str, b: str) -> Optional[bool]:
    """True/False when cheap checks decide the pair, else None (needs sympy)."""
    a, b = unassign(a, b)
    if a.replace(" ", "") == b.replace(" ", ""):
        return True
    na, nb = plain_number(a), plain_number(b)
    if na is not None and nb is not None:
        return numbers_equal(na, nb)
    if _is_words(a) or _is_words(b):
        return a.replace(" ", "").lower() == b.replace(" ", "").lower()
    return None


_CHOICE = re.compile(r"^\(?\s*([A-E])\s*\)?$")
_CHOICE_PREFIX = re.compile(r"^\(?\s*([A-E])\s*(?:\)|:|\.|$)")


def choice_letter(gold: str) -> Optional[str]:
    m = _CHOICE.match(gold.strip())
    return m.group(1) if m else None


# ---------------------------------------------------------------- the public function


def _fast_verdict(p: str, g: str) -> Optional[bool]:
    letter = choice_letter(g)
    if letter:
        m = _CHOICE_PREFIX.match(p.strip())
        return bool(m) and m.group(1) == letter
    return compare(structure(p), structure(g), fast_scalar)


@functools.lru_cache(maxsize=65536)  # RL groups repeat answers; the verdict is a pure function of the pair
def _cached_fast(p: str, g: str) -> Optional[bool]:
    return _fast_verdict(p, g)


def math_equal(predicted, gold, *, timeout_s: Optional[float] = None) -> bool:
    """True when `predicted` and `gold` are the same answer. Never raises, never blocks past the limit."""
    try:
        if predicted is None or gold is None:
            return False
        p, g = normalize_answer(predicted), normalize_answer(gold)
        if not p or not g:
            return False
        verdict = _cached_fast(p, g)
        if verdict is not None:
            return verdict
        if len(p) > MAX_SYMBOLIC_CHARS or len(g) > MAX_SYMBOLIC_CHARS:
            return False
        from gcpo_lite.verify.workers import symbolic_equal_with_timeout

        return symbolic_equal_with_timeout(p, g, DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s)
    except Exception:
        return False
