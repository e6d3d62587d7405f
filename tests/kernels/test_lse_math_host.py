"""The CUDA kernels' online log-sum-exp arithmetic and id checks (csrc/lse_math.h), compiled for the host with
the system C++ compiler and checked exhaustively against a float64 log-sum-exp (issue 15). No GPU needed.

Every sequence of up to 4 values drawn from -inf, +inf, NaN, 0, 1, -2.5, 80, +-1e300 and 1e-300 (11110 cases:
all -inf rows, a leading -inf, interleaved -inf, +inf, NaN, values that overflow float32), pushed one by one and
split at every point into two partial states merged both ways, in float64 and float32."""

import itertools
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
VALUES = ["-inf", "inf", "nan", "0", "1", "-2.5", "80", "1e300", "-1e300", "1e-300"]
CXX = next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)

pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler (c++, g++ or clang++) on PATH")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    exe = tmp_path_factory.mktemp("lse") / "lse_math_host"
    cmd = [
        CXX,
        "-std=c++17",
        "-O2",
        f"-I{ROOT / 'csrc'}",
        str(ROOT / "tests" / "kernels" / "lse_math_host.cpp"),
        "-o",
        str(exe),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def _expected(values: list[float], dtype) -> float:
    x = torch.tensor(values, dtype=torch.float64).to(dtype).to(torch.float64)  # float32: the rounded inputs
    return torch.logsumexp(x, 0).item() if len(values) else -math.inf


def _same(got: float, want: float, rel: float) -> bool:
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if math.isinf(want) or math.isinf(got):
        return got == want
    return abs(got - want) <= rel * max(1.0, abs(want))


def test_update_and_merge_match_float64_logsumexp_exhaustively(driver):
    cases = [list(c) for n in range(1, 5) for c in itertools.product(VALUES, repeat=n)]
    stdin = "".join(f"{len(c)} {' '.join(c)}\n" for c in cases)
    out = subprocess.run([str(driver)], input=stdin, capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if not line.startswith(("id ", "tg "))]
    assert len(lines) == len(cases)
    bad = []
    for case, line in zip(cases, lines):
        vals = [float(v) for v in case]
        got = [float(t) for t in line.split()]
        n = len(vals)
        want64, want32 = _expected(vals, torch.float64), _expected(vals, torch.float32)
        checks = [("push f64", got[0], want64, 1e-12), ("push f32", got[1], want32, 2e-6)]
        splits64, splits32 = got[2 : 2 + 2 * (n + 1)], got[2 + 2 * (n + 1) :]
        checks += [(f"split {k // 2} f64", g, want64, 1e-12) for k, g in enumerate(splits64)]
        checks += [(f"split {k // 2} f32", g, want32, 2e-6) for k, g in enumerate(splits32)]
        bad += [(case, what, g, w) for what, g, w, rel in checks if not _same(g, w, rel)]
    assert not bad, f"{len(bad)} mismatches, first: {bad[:5]}"


def test_id_check_and_target_gradient(driver):
    out = subprocess.run([str(driver)], input="", capture_output=True, text=True, check=True).stdout
    ids = {
        int(p[1]): p[2] == "1" for p in (line.split() for line in out.splitlines() if line.startswith("id "))
    }
    assert ids == {-100: False, -1: False, 0: True, 5: True, 9: True, 10: False, 1 << 40: False}
    for line in (line for line in out.splitlines() if line.startswith("tg ")):
        lp, g64, g32 = (float(t) for t in line.split()[1:])
        want = 2.0 * -math.expm1(lp)  # g (1 - p) for g = 2, exactly
        assert g64 == pytest.approx(want, rel=1e-15)
        assert g32 == pytest.approx(want, rel=1e-6)  # 1 - p in float32 would lose every digit at lp = -1e-12
