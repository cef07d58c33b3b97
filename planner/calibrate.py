"""Fits from measurements: runtime and energy as linear functions of token counts.

Per model and instance, ordinary least squares fits

    runtime_s = a0 + a1 * input_tokens + a2 * output_tokens
    energy_j  = b0 + b1 * input_tokens + b2 * output_tokens

to what the plan search measured (`requests.csv` has one row per request;
`profiles.csv` one row per concurrency level, with the energy NVML counted). Each fit
reports R² and its residuals. The slopes are what the timing model calls prefill time
per prompt token and time per output token, so a fit also corrects the efficiency
factors: each factor is scaled until the model predicts the measured slope.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from planner.timing import Deployment, Efficiency, Workload, predict


class CalibrationError(ValueError):
    """Too few or too uniform measurements to fit, or an unreadable file."""


@dataclass(frozen=True)
class Fit:
    """y = intercept + per_input * input_tokens + per_output * output_tokens."""

    intercept: float
    per_input: float
    per_output: float
    r2: float
    residual_rms: float
    residual_max: float
    n: int

    def __call__(self, input_tokens: float, output_tokens: float) -> float:
        return self.intercept + self.per_input * input_tokens + self.per_output * output_tokens

    def as_dict(self) -> dict[str, float]:
        return {"intercept": self.intercept, "per_input_token": self.per_input,
                "per_output_token": self.per_output, "r2": self.r2,
                "residual_rms": self.residual_rms, "residual_max": self.residual_max,
                "samples": self.n}


def ols(samples: Sequence[tuple[float, float, float]]) -> Fit:
    """Least squares over (input_tokens, output_tokens, y) samples.

    Raises:
        CalibrationError: fewer than 4 samples, or token counts that do not vary
            independently (the coefficients would not be determined).
    """
    if len(samples) < 4:
        raise CalibrationError(f"{len(samples)} samples; a fit needs at least 4")
    rows = [(1.0, float(i), float(o)) for i, o, _ in samples]
    ys = [float(y) for _, _, y in samples]
    try:
        coef = least_squares(rows, ys)
    except CalibrationError:
        raise CalibrationError("input and output token counts do not vary independently "
                               "across the samples; measure more than one workload shape"
                               ) from None
    fitted = [sum(c * x for c, x in zip(coef, r, strict=True)) for r in rows]
    residuals = [y - f for y, f in zip(ys, fitted, strict=True)]
    mean = sum(ys) / len(ys)
    total = sum((y - mean) ** 2 for y in ys)
    sse = sum(e * e for e in residuals)
    return Fit(intercept=coef[0], per_input=coef[1], per_output=coef[2],
               r2=1 - sse / total if total > 0 else 1.0,
               residual_rms=math.sqrt(sse / len(ys)),
               residual_max=max(abs(e) for e in residuals), n=len(ys))


def least_squares(rows: Sequence[Sequence[float]], ys: Sequence[float]) -> list[float]:
    """The coefficients c minimising sum((row . c - y)^2), any number of columns.

    Columns are scaled to unit size before solving the normal equations, so a column of
    token counts in the thousands beside a constant column solves as well as two of 1s.

    Raises:
        CalibrationError: a column is all zeros or a combination of the others.
    """
    width = len(rows[0])
    scale = [max(abs(r[j]) for r in rows) or 1.0 for j in range(width)]
    scaled = [[r[j] / scale[j] for j in range(width)] for r in rows]
    gram = [[sum(r[a] * r[b] for r in scaled) for b in range(width)] for a in range(width)]
    rhs = [sum(r[a] * y for r, y in zip(scaled, ys, strict=True)) for a in range(width)]
    return [c / s for c, s in zip(_solve(gram, rhs), scale, strict=True)]


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting."""
    n = len(rhs)
    a = [[*row, b] for row, b in zip(matrix, rhs, strict=True)]
    scale = max(abs(a[i][i]) for i in range(n)) or 1.0
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) <= 1e-12 * scale:
            raise CalibrationError(f"column {col} of the fit is not determined by the samples")
        a[col], a[pivot] = a[pivot], a[col]
        for row in range(col + 1, n):
            factor = a[row][col] / a[col][col]
            a[row] = [x - factor * y for x, y in zip(a[row], a[col], strict=True)]
    out = [0.0] * n
    for row in reversed(range(n)):
        out[row] = (a[row][n] - sum(a[row][k] * out[k] for k in range(row + 1, n))) / a[row][row]
    return out


def _read(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError as exc:
        raise CalibrationError(f"cannot read {path}: {exc}") from exc


def runtime_samples(requests_csv: Path, plan: str | None = None
                    ) -> dict[tuple[str, int], list[tuple[float, float, float]]]:
    """(input, output, end-to-end seconds) per plan and concurrency, from requests.csv."""
    groups: dict[tuple[str, int], list[tuple[float, float, float]]] = defaultdict(list)
    for row in _read(requests_csv):
        if plan is None or row["plan"] == plan:
            groups[(row["plan"], int(row["concurrency"]))].append(
                (float(row["prompt_tokens"]), float(row["output_tokens"]), float(row["e2e_s"])))
    return dict(groups)


def energy_samples(profiles_csv: Path, plan: str | None = None
                   ) -> dict[str, list[tuple[float, float, float]]]:
    """(mean input, mean output, joules per request) per plan, from measured levels."""
    groups: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for row in _read(profiles_csv):
        if (plan is None or row["plan"] == plan) and row.get("energy_j") and int(row["requests"]):
            groups[row["plan"]].append((float(row["mean_input_tokens"]),
                                        float(row["mean_output_tokens"]),
                                        float(row["energy_j"]) / int(row["requests"])))
    return dict(groups)


@dataclass(frozen=True)
class Correction:
    efficiency: Efficiency
    model_fit: Fit  # the model's own predictions at the measured shapes, fitted the same way
    notes: tuple[str, ...]


def correct(dep: Deployment, eff: Efficiency, fit: Fit,
            samples: Sequence[tuple[float, float, float]], concurrency: int) -> Correction:
    """Scale the factors until the model's fitted slopes match the measured ones.

    The model predicts every measured (input, output) shape and is fitted the same way
    as the measurements, so both slopes mean the same thing. The decode factor that
    bounds the step (bandwidth or decode MFU) moves to match the slope per output
    token, prefill MFU to match the slope per input token; two rounds settle the
    small coupling between them (a longer prompt also makes decode read more KV).

    Raises:
        CalibrationError: the model cannot serve the measured shapes.
    """
    shapes = sorted({(int(i), int(o)) for i, o, _ in samples})[:60]
    base = predict(dep, Workload(*shapes[len(shapes) // 2], concurrency), eff)
    if not base.feasible:
        raise CalibrationError(f"the model cannot serve the measured workload: {base.why_not}")
    decode_factor = "bandwidth" if base.decode_bound == "memory" else "decode_mfu"
    notes: list[str] = []
    for _ in range(2):
        eff = _match(eff, decode_factor, fit.per_output, "per_output", dep, shapes,
                     concurrency, notes)
        eff = _match(eff, "prefill_mfu", fit.per_input, "per_input", dep, shapes, concurrency,
                     notes)
    return Correction(eff, _model_fit(dep, eff, shapes, concurrency), tuple(sorted(set(notes))))


def _model_fit(dep: Deployment, eff: Efficiency, shapes: Sequence[tuple[int, int]],
               concurrency: int) -> Fit:
    return ols([(i, o, predict(dep, Workload(i, o, concurrency), eff).e2e_s)
                for i, o in shapes])


def _match(eff: Efficiency, name: str, target: float, slope: str, dep: Deployment,
           shapes: Sequence[tuple[int, int]], concurrency: int, notes: list[str]) -> Efficiency:
    if target <= 0:
        notes.append(f"{name} kept: the measured slope is {target:.3g}, not positive")
        return eff
    low, high = 1e-3, 1.0  # the predicted slope falls as the factor rises
    for _ in range(40):
        mid = math.sqrt(low * high)
        trial = _model_fit(dep, replace(eff, **{name: mid}), shapes, concurrency)
        if getattr(trial, slope) > target:
            low = mid
        else:
            high = mid
    value = math.sqrt(low * high)
    if value >= 0.999:
        notes.append(f"{name} capped at 1: measured faster than the catalogue's peak allows")
    return replace(eff, **{name: value})
