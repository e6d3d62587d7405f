"""LaTeX / plain-text math -> sympy, by a small recursive-descent parser written for answers.

Covers what final answers use: numbers, letters (implicit multiplication: `2xy`, `3\\sqrt{2}`,
`2(x+1)`), `+ - * / ^ **`, `\\cdot \\times \\div`, `\\frac` (also `\\frac12`), `\\sqrt[n]{}`,
`\\binom`, `!`, `|x|`, trig / log functions (`\\sin^2 x`, `\\log_2 8`), Greek letters, `\\pi`,
`\\infty`, `e`, `i`, subscripts (`x_1`), and one relation (`=`, `<`, `\\leq`, ...).
Anything else raises ParseError; the caller scores that pair by string comparison only.

It imports sympy, so it runs inside the verifier's worker processes (math_worker.py), where a
pathological input (2^{2^{100}}) can be killed by the time limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sympy as sp


class ParseError(ValueError):
    pass


@dataclass
class Relation:
    op: str  # one of = < <= > >= !=
    lhs: sp.Expr
    rhs: sp.Expr


_GREEK = (
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi "
    "rho sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi Omega"
).split()
_FUNCS = {
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "sec": sp.sec,
    "csc": sp.csc,
    "cot": sp.cot,
    "arcsin": sp.asin,
    "arccos": sp.acos,
    "arctan": sp.atan,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "tanh": sp.tanh,
    "ln": sp.log,
    "log": sp.log,
    "exp": sp.exp,
}
_WORDS = sorted(["sqrt", "pi", "infty", "inf", *_FUNCS], key=len, reverse=True)  # plain-text spellings
_RELOPS = {
    "=": "=",
    "<": "<",
    ">": ">",
    "\\lt": "<",
    "\\gt": ">",
    "\\leq": "<=",
    "\\geq": ">=",
    "\\le": "<=",
    "\\ge": ">=",
    "\\leqslant": "<=",
    "\\geqslant": ">=",
    "<=": "<=",
    ">=": ">=",
    "\\neq": "!=",
    "\\ne": "!=",
    "!=": "!=",
}
_NOT_ATOMS = {"\\{", "\\}", "\\cup", "\\cap", "\\pm", "\\mp", "\\rfloor", "\\rceil"}  # closers, set operators
_MUL = {"*", "\\cdot", "\\times", "\\ast"}
_DIV = {"/", "\\div"}
_TOKEN = re.compile(r"\s*(\d+\.?\d*|\.\d+|\\[a-zA-Z]+|\\.|\*\*|<=|>=|!=|[a-zA-Z]|[-+*/^_(){}\[\]|,!=<>'])")
MAX_TOKENS = 2000
BIG_EXPONENT = 10_000  # integer powers above this are left unevaluated (2^{10^9} would not fit in memory)


def tokenize(s: str) -> list[str]:
    tokens, i = [], 0
    s = s.rstrip()
    while i < len(s):
        word = next(
            (w for w in _WORDS if s.startswith(w, i) and not s[i + len(w) : i + len(w) + 1].isalpha()), None
        )
        if word and (i == 0 or not s[i - 1].isalpha()):
            tokens.append("\\" + ("infty" if word == "inf" else word))
            i += len(word)
            continue
        m = _TOKEN.match(s, i)
        if not m:
            raise ParseError(f"unexpected character {s[i]!r}")
        tokens.append(m.group(1))
        i = m.end()
        if len(tokens) > MAX_TOKENS:
            raise ParseError("too long")
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]):
        self.t = tokens
        self.i = 0

    def peek(self, k: int = 0):
        j = self.i + k
        return self.t[j] if j < len(self.t) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ParseError(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    # -- grammar: relation > sum > product > unary > power > postfix > atom
    def relation(self):
        lhs = self.sum()
        tok = self.peek()
        if tok in _RELOPS:
            self.take()
            rhs = self.sum()
            if self.peek() is not None:
                raise ParseError(f"trailing {self.peek()!r}")
            return Relation(_RELOPS[tok], lhs, rhs)
        if tok is not None:
            raise ParseError(f"trailing {tok!r}")
        return lhs

    def sum(self):
        value = self.product()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.product()
            value = value + rhs if op == "+" else value - rhs
        return value

    def _starts_atom(self, tok) -> bool:
        if tok is None:
            return False
        if tok[0].isdigit() or tok[0] == "." or tok.isalpha() or tok in ("(", "{"):
            return True
        return (
            tok.startswith("\\")
            and tok not in _RELOPS
            and tok not in _MUL
            and tok not in _DIV
            and tok not in _NOT_ATOMS
        )

    def product(self):
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in _MUL:
                self.take()
                value = value * self.unary()
            elif tok in _DIV:
                self.take()
                value = value / self.unary()
            elif self._starts_atom(tok):  # implicit multiplication: 2x, 3\sqrt{2}, 2(x+1)
                value = value * self.power()
            else:
                return value

    def unary(self):
        if self.peek() == "-":
            self.take()
            return -self.unary()
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self):
        base = self.postfix()
        if self.peek() == "^" or self.peek() == "**":
            self.take()
            exponent = self.group_arg() if self.peek() == "{" else self.unary()
            return _pow(base, exponent)
        return base

    def postfix(self):
        value = self.atom()
        while self.peek() == "!":
            self.take()
            value = sp.factorial(value)
        return value

    def group_arg(self):
        """A TeX argument: {expr}, or one token (\\frac12 -> 1, 2)."""
        tok = self.peek()
        if tok == "{":
            self.take("{")
            value = self.sum()
            self.take("}")
            return value
        if tok is not None and tok[0].isdigit() and len(tok) > 1 and "." not in tok:
            self.t[self.i] = tok[1:]  # \frac12: the argument is the first digit only
            return sp.Integer(tok[0])
        return self.atom()

    def atom(self):
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end")
        if tok[0].isdigit() or tok[0] == ".":
            self.take()
            return sp.Rational(tok) if "." in tok else sp.Integer(tok)
        if tok in ("(", "[", "{"):
            close = {"(": ")", "[": "]", "{": "}"}[self.take()]
            value = self.sum()
            self.take(close)
            return value
        if tok == "|":
            self.take()
            value = self.sum()
            self.take("|")
            return sp.Abs(value)
        if tok.isalpha() and len(tok) == 1:
            self.take()
            return self.subscripted(tok)
        if tok.startswith("\\"):
            return self.command(self.take()[1:])
        raise ParseError(f"unexpected {tok!r}")

    def subscripted(self, name: str):
        if self.peek() == "_":
            self.take()
            if self.peek() == "{":
                self.take("{")
                parts = []
                while self.peek() not in ("}", None):
                    parts.append(self.take())
                self.take("}")
                sub = "".join(parts)
            else:
                sub = self.take()
            return sp.Symbol(f"{name}_{sub}")
        if name == "e":
            return sp.E
        if name == "i":
            return sp.I
        return sp.Symbol(name)

    def command(self, name: str):
        if name in ("frac", "cfrac"):
            num = self.group_arg()
            den = self.group_arg()
            return num / den
        if name == "sqrt":
            if self.peek() == "[":
                self.take("[")
                index = self.sum()
                self.take("]")
                return sp.root(self.group_arg(), index)
            if self.peek() == "(":
                return sp.sqrt(self.atom())
            return sp.sqrt(self.group_arg())
        if name in ("binom", "dbinom", "tbinom"):
            return sp.binomial(self.group_arg(), self.group_arg())
        if name == "pi":
            return sp.pi
        if name == "infty":
            return sp.oo
        if name in _GREEK:
            return self.subscripted(name)
        if name in _FUNCS:
            return self.function(name)
        if name in ("lfloor", "lceil"):
            value = self.sum()
            self.take("\\r" + name[1:])
            return sp.floor(value) if name == "lfloor" else sp.ceiling(value)
        if name in ("lvert", "rvert", "vert", "rfloor", "rceil", "mid"):
            raise ParseError(f"\\{name} is not supported")
        raise ParseError(f"unknown command \\{name}")

    def function(self, name: str):
        power = None
        base = None
        if name == "log" and self.peek() == "_":
            self.take()
            base = self.group_arg()
        if self.peek() == "^":  # \sin^2 x = (\sin x)^2
            self.take()
            power = self.group_arg()
        if self.peek() in ("(", "{"):
            arg = self.atom()
        else:  # \sin 2x: the argument runs over implicit products
            arg = self.power()
            while self._starts_atom(self.peek()) and (self.peek() or "")[1:] not in _FUNCS:
                arg = arg * self.power()  # stops at the next function: \sin x \cos x
        value = sp.log(arg, base) if base is not None else _FUNCS[name](arg)
        return _pow(value, power) if power is not None else value


def _pow(base, exponent):
    if exponent.is_Integer and abs(int(exponent)) > BIG_EXPONENT and base.is_number:
        return sp.Pow(base, exponent, evaluate=False)
    return base**exponent


def parse_latex(s: str):
    """sympy expression (or Relation) for one answer; raises ParseError when unsupported."""
    tokens = tokenize(s)
    if not tokens:
        raise ParseError("empty")
    return _Parser(tokens).relation()
