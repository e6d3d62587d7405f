"""Reward functions for Countdown (reach `target` from `nums` with + - * /), in TRL's convention.

Each takes the batch as keyword arguments and returns one float per completion. The dataset's `target` and
`nums` columns arrive as keyword arguments, one list each; completions are chat messages
([{"role": "assistant", "content": text}]) because the prompts are.
"""

from __future__ import annotations

import ast
import operator
import re
from fractions import Fraction

ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
SHAPE = re.compile(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", re.S)
OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


def _value(node) -> Fraction:
    """The exact value of an arithmetic expression of integers (ValueError for anything else)."""
    if isinstance(node, ast.Expression):
        return _value(node.body)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in OPS:
        return OPS[type(node.op)](_value(node.left), _value(node.right))
    raise ValueError("only integers, + - * / and parentheses")


def equation_value(equation: str, nums: list) -> Fraction | None:
    """The equation's value when it uses each of `nums` exactly once and nothing else; else None."""
    if not re.fullmatch(r"[\d\s+\-*/()]+", equation):
        return None
    if sorted(int(n) for n in re.findall(r"\d+", equation)) != sorted(int(n) for n in nums):
        return None
    try:
        return _value(ast.parse(equation, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def correct(prompts, completions, target, nums, **kwargs) -> list[float]:
    """1.0 when the last <answer>...</answer> is an equation over exactly the given numbers equal to target."""
    scores = []
    for completion, goal, numbers in zip(completions, target, nums):
        found = ANSWER.findall(_text(completion))
        value = equation_value(found[-1].strip(), numbers) if found else None
        scores.append(1.0 if value is not None and value == int(goal) else 0.0)
    return scores


def format_reward(completions, **kwargs) -> list[float]:
    """1.0 when the completion is <think>...</think> then <answer>...</answer> and nothing else."""
    return [1.0 if SHAPE.fullmatch(_text(c)) else 0.0 for c in completions]
