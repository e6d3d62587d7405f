"""Final-answer extraction and normalization: plain string work, no sympy, no exceptions.

`extract_answer(text)` finds what a completion (or a reference solution) gives as its final
answer, in this order of trust:
  1. the last well-formed `\\boxed{...}` / `\\fbox{...}` (nested braces allowed);
  2. the last `#### x` line (GSM8K style);
  3. the last "the (final) answer is x" / "Answer: x";
  4. optionally, the last number in the text (`last_number_fallback`).
When the text has a `</think>`, the part after it is searched first: the reasoning before it
often contains trial answers that are not the final one.

`normalize_answer(s)` strips what does not change the value (dollar signs, `\\text{}`
wrappers, `\\left`/`\\right`, spacing commands, units, degrees, percent, thousands commas) so
that cheap string and number comparisons settle most pairs before sympy is needed.
"""

from __future__ import annotations

import re
from typing import Optional

MAX_SCAN_CHARS = 100_000  # longer texts are cut to their tail: the final answer is at the end

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def _match_brace(text: str, open_at: int) -> int:
    """Index of the `}` closing the `{` at open_at, or -1. Escaped braces (`\\{`, `\\}`) do not count."""
    depth = 0
    i, n = open_at, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _closing_braces(text: str) -> dict[int, int]:
    """{index of each `{`: index of its closing `}`} in one pass; unclosed `{` are absent.

    Escaped braces (`\\{`, `\\}`) do not count. Linear time, so a text of many unclosed boxes
    costs one scan, not one per box."""
    closing: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2  # skip the escaped character, e.g. \{ in \boxed{\{1,2\}}
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            closing[stack.pop()] = i
        i += 1
    return closing


_BOX_START = re.compile(r"\\(?:boxed|fbox)(?![^\W\d_])")  # not \boxedfoo, another command
_TEX_TOKEN = re.compile(r"[^\s$]+")


def last_boxed(text: str) -> Optional[str]:
    """Content of the last well-formed \\boxed{...} (or `\\boxed x`); None when there is none.

    A box left open (a completion cut at max length) is skipped for the one before it. Linear time."""
    starts = [m.end() for m in _BOX_START.finditer(text)]
    if not starts:
        return None
    closing = _closing_braces(text)
    for after in reversed(starts):
        i = after
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            end = closing.get(i, -1)
            if end != -1:
                return text[i + 1 : end]
        elif i > after:  # `\\boxed 5`: TeX takes one token
            m = _TEX_TOKEN.match(text, i)
            if m:
                return m.group(0)
    return None


_HASHES = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:)\s*:?\s*([^\n]{1,300})", re.I)
# thousands groups (1,250), decimals, simple fractions (3/4); "1,2" is two numbers, not one
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|-?\d+(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")


def _clean_sentence_answer(s: str) -> str:
    """'$\\frac{1}{2}$.' -> '\\frac{1}{2}': drop math delimiters and a sentence-ending period."""
    s = s.strip()
    m = re.match(r"^\$+([^$]+)\$+", s)  # first $...$ span, when the sentence has one
    if m:
        s = m.group(1)
    elif re.match(r"^\\\((.+?)\\\)", s):
        s = re.match(r"^\\\((.+?)\\\)", s).group(1)
    s = re.sub(r"[.\s]+$", "", s)
    return s.strip()


def _extract_from(text: str, last_number_fallback: bool) -> Optional[str]:
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    hashes = _HASHES.findall(text)
    if hashes and hashes[-1].strip():
        return hashes[-1].strip()
    said = _ANSWER_IS.findall(text)
    if said:
        ans = _clean_sentence_answer(said[-1])
        if ans:
            return ans
    if last_number_fallback:
        return _last_number(text)
    return None


NUMBER_WINDOW_CHARS = 2_000  # the last number is read from this much text before its last digit


def _last_number(text: str) -> Optional[str]:
    """The last number _NUMBER finds in text, read from a window ending at the last digit.

    _NUMBER's thousands branch backtracks over a long `111,111,...` chain from every start position,
    quadratic in the chain; the window bounds that to a constant, and starts at a non-number character
    so no number is cut."""
    end = len(text)
    while end > 0 and not text[end - 1].isdigit():
        end -= 1
    if end == 0:
        return None
    start = max(0, end - NUMBER_WINDOW_CHARS)
    whole = start
    while 0 < whole < end and (text[whole - 1].isdigit() or text[whole - 1] in ",.-"):
        whole += 1  # inside a number: move to its end, keeping the window's numbers whole
    start = whole if whole < end else start  # one number longer than the window: read its tail
    numbers = _NUMBER.findall(text, start, end)
    return numbers[-1].rstrip(",").replace(" ", "") if numbers else None


def extract_answer(text, last_number_fallback: bool = True) -> Optional[str]:
    """The final answer stated in `text`, raw (not normalized); None when it states none."""
    try:
        if not isinstance(text, str) or not text:
            return None
        text = text[-MAX_SCAN_CHARS:]
        if "</think>" in text:
            after = text.rsplit("</think>", 1)[1]
            found = _extract_from(after, last_number_fallback)
            if found is not None:
                return found
        return _extract_from(text, last_number_fallback)
    except Exception:  # never raise: a malformed completion simply has no answer
        return None


# ---------------------------------------------------------------- normalization

_UNICODE = {
    "\u2212": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u00d7": "\\times ",
    "\u00b7": "\\cdot ",
    "\u22c5": "\\cdot ",
    "\u00f7": "\\div ",
    "\u221a": "\\sqrt",
    "\u03c0": "\\pi ",
    "\u221e": "\\infty ",
    "\u00b2": "^2",
    "\u00b3": "^3",
    "\u00b0": "",
    "\u2264": "\\le ",
    "\u2265": "\\ge ",
    "\u2260": "\\ne ",
    "\u222a": "\\cup ",
    "\u2229": "\\cap ",
    "\uff0c": ",",
    "\u3002": ".",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
}
_DROP = re.compile(
    r"(?<!\\)(?:\\left\b|\\right\b|\\big[lr]?\b|\\Big[lr]?\b|\\displaystyle\b|\\[,;:! ]|\\quad\b|\\qquad\b)|~"
)
_WRAPPERS = re.compile(
    r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|boldsymbol|operatorname|mathnormal)\s*\{"
)
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ\b|\\degree\b|\bdegrees?\b")
# Unit words dropped at the end of an answer ("12 cm^2", "5 dollars"); only multi-letter words,
# so a trailing variable (x, m) is never taken for a unit.
_UNITS = (
    "square units|sq units|units?|square feet|square inches|square meters|square centimeters|sq ft|"
    "cubic feet|cubic inches|cubic meters|cubic centimeters|meters?|metres?|centimeters?|cm|mm|km|"
    "kilometers?|inches|inch|feet|foot|ft|yards?|miles?|mph|miles per hour|km/h|hours?|hrs?|minutes?|"
    "mins?|seconds?|secs?|days?|weeks?|months?|years?|dollars?|cents?|euros?|pounds?|grams?|kg|"
    "kilograms?|liters?|litres?|ml|gallons?|ounces?|oz|lbs?|people|students|apples|marbles|points|"
    "percent|per cent|ways|times"
)
_UNIT_TAIL = re.compile(rf"(?<=[\d}}).\s])\s*(?:{_UNITS})\s*(?:\^\s*\{{?[23]\}}?)?\s*\.?$", re.I)
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
# 3\frac{1}{2} is a mixed number in competition answers, not 3 * 1/2
_MIXED = re.compile(r"(?<![\w.}^_])(\d+)\s*\\frac\s*\{(\d+)\}\s*\{(\d+)\}")


def _unwrap_commands(s: str) -> str:
    """\\text{abc} -> abc, keeping nested braces intact (\\text{\\{1\\}} -> \\{1\\})."""
    for _ in range(50):  # bounded: each pass removes one wrapper
        m = _WRAPPERS.search(s)
        if not m:
            break
        open_at = m.end() - 1
        end = _match_brace(s, open_at)
        if end == -1:
            s = s[: m.start()] + s[m.end() :]
            continue
        s = s[: m.start()] + s[open_at + 1 : end] + s[end + 1 :]
    return s


def _strip_outer_math(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    return s


def _balanced(s: str) -> bool:
    depth = 0
    for i, c in enumerate(s):
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            continue
        if c == "{" and (i == 0 or s[i - 1] != "\\"):
            depth += 1
        elif c == "}" and (i == 0 or s[i - 1] != "\\"):
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _strip_outer_braces(s: str) -> str:
    """Remove k wrapping brace pairs in linear time (a deeply nested {{{...}}} must not cost O(n^2))."""
    k = min(len(s) - len(s.lstrip("{")), len(s) - len(s.rstrip("}")))
    while k > 0 and len(s) > 2 * k:
        inner = s[k:-k]
        if _balanced(inner) and not inner.endswith("\\"):
            return inner.strip()
        k = k - 1 if k < 4 else k // 2  # a `}` of the content closes early: try fewer layers
    return s


_REPEATING = re.compile(r"^(-?)(\d*)\.(\d*)\\overline\{(\d{1,50})\}$")
_NUMBER_THEN_WORDS = re.compile(r"^(-?[\d.,/]*\d)\s+([A-Za-z]{3,}(?: [A-Za-z]{2,}){0,3})$")
_NOT_UNITS = {"sqrt", "pi", "infty", "sin", "cos", "tan", "log", "ln", "exp", "and", "or", "mod", "pmod"}


def _repeating_decimal(s: str) -> str:
    """0.\\overline{3} -> \\frac{1}{3}, 1.2\\overline{45} -> \\frac{1367}{1110} (exact, no rounding)."""
    m = _REPEATING.match(s)
    if not m:
        return s
    sign, whole, fixed, period = m.groups()
    whole, shift = int(whole or "0"), 10 ** len(fixed)
    numerator = (int(fixed + period) - int(fixed or "0")) + whole * shift * (10 ** len(period) - 1)
    denominator = shift * (10 ** len(period) - 1)
    return f"{sign}\\frac{{{numerator}}}{{{denominator}}}"


def _strip_markup(s: str) -> str:
    """Unicode symbols, math delimiters, \\dfrac, mixed numbers, percent, thousands separators, spacing and
    wrapper commands, degrees: what typesetting adds around the value."""
    for k, v in _UNICODE.items():
        if k in s:
            s = s.replace(k, v)
    s = _strip_outer_math(s)
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = _MIXED.sub(r"(\1+\\frac{\2}{\3})", s)
    s = s.replace("\\%", "").replace("%", "")
    s = re.sub(r"\{,\}", ",", s)  # 1{,}000
    s = re.sub(r"(?<=\d)\\[,!;: ]\s*(?=\d{3}(?!\d))", "", s)  # 1\,000 (thin-space thousands)
    s = _DROP.sub(" ", s)
    s = _unwrap_commands(s)
    s = _DEGREES.sub("", s)
    s = re.sub(r"\\(?:mathrm|text)\b", "", s)
    s = s.replace("\\le ", "\\leq ").replace("\\ge ", "\\geq ").replace("\\ne ", "\\neq ")
    return re.sub(r"\s+", " ", s).strip()


def _strip_words(s: str) -> str:
    """Trailing units, a leading `x \\in`, a count's noun ("5 boxes") and a final period."""
    for _ in range(3):  # "12 square units." / "5 cm^2"
        new = _UNIT_TAIL.sub("", s).strip()
        if new == s:
            break
        s = new
    s = re.sub(r"^(?:x|y|z|a|b|c|n|k|t|r)\s*\\in\s*", "", s)  # x \in [1,2] -> [1,2]
    m = _NUMBER_THEN_WORDS.match(s)  # "5 boxes": a count with its noun
    if m and not set(m.group(2).lower().split()) & _NOT_UNITS:
        s = m.group(1)
    return s.rstrip(".").strip()


def _canonical_number(s: str) -> str:
    """{5} -> 5, 1 000 000 and 1,000 -> 1000000 and 1000, 0.\\overline{3} -> \\frac{1}{3}, 5.00 -> 5."""
    s = _strip_outer_braces(s)  # {5} -> 5, {{{7}}} -> 7
    if re.fullmatch(r"-?\d{1,3}(?: \d{3})+", s):
        s = s.replace(" ", "")  # 1 000 000
    compact = s.replace(" ", "")
    if _THOUSANDS.match(compact):
        s = compact.replace(",", "")
    s = _repeating_decimal(s)
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]  # 5.00 -> 5
    return s


def normalize_answer(s) -> str:
    """Canonical text of an answer for comparison; '' for nothing usable. Never raises."""
    try:
        if s is None:
            return ""
        return _canonical_number(_strip_words(_strip_markup(str(s))))
    except Exception:
        return ""
