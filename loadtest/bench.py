"""`llmfleet bench PLANS.toml`: run the plan search and write what it found.

Into the output folder (default `.run/bench/`):

- `profiles.csv` — one row per plan and concurrency level: token counts,
  latency percentiles, throughput, memory, energy where measured, price and
  cost per million output tokens, and whether the level met the SLA (the
  sizing work fits its models to this file);
- `requests.csv` — one row per request (tokens in and out, TTFT, end to end);
- `ranking.txt` — the ranked table, also printed;
- `result.json` — the chosen plan and every plan's verdict, for tools;
- `bench.png` — latency against throughput per plan, the SLA line, the chosen
  plan marked.

The exit code is 0 when a plan meets the SLA, 1 when none does, 2 when the
plans file is unusable.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import TextIO

from loadtest import plans as plans_file
from loadtest.plans import Plan, Search
from loadtest.ranking import PlanResult, Ranked, basis, rank
from loadtest.search import Progress, SearchOptions, SearchRun, run_search
from loadtest.sla import LATENCY_METRICS

GIB = 1024**3


class TerminalProgress(Progress):
    """A progress bar over plans x levels on stderr, redrawn in place on a terminal."""

    def __init__(self, plans: list[Plan], levels: int, stream: TextIO | None = None) -> None:
        self.plans = plans
        self.levels = levels
        self.stream = stream or sys.stderr  # looked up now: tests and tools swap it
        self.tty = self.stream.isatty()
        self.steps_done = 0
        self.index = 0
        self._last_line = ""

    @property
    def total_steps(self) -> int:
        return len(self.plans) * (self.levels + 1)  # starting the engine counts as a step

    def _draw(self, activity: str, force: bool = False) -> None:
        width = 24
        filled = round(width * self.steps_done / self.total_steps)
        line = (f"[{'#' * filled}{'.' * (width - filled)}] plan {self.index + 1}/"
                f"{len(self.plans)} {self.plans[self.index].name}: {activity}")
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self._last_line)))
        elif force:
            self.stream.write(line + "\n")
        self._last_line = line
        self.stream.flush()

    def plan_started(self, index: int, plan: Plan) -> None:
        self.index = index
        self._draw("starting" if plan.endpoint is None else f"measuring {plan.endpoint}",
                   force=True)

    def waiting(self, seconds: float) -> None:
        self._draw(f"waiting for vLLM, {seconds:.0f} s")

    def warming_up(self, requests: int) -> None:
        self._draw(f"warming up ({requests} requests)", force=True)

    def level(self, concurrency: int, done: int, total: int) -> None:
        if done == total:
            self.steps_done += 1
        self._draw(f"concurrency {concurrency}: {done}/{total} requests",
                   force=done == total)

    def plan_done(self, result: PlanResult) -> None:
        self.steps_done = (self.index + 1) * (self.levels + 1)
        status = "failed: " + result.error if result.error else "done"
        self._draw(status, force=True)
        if self.tty:
            self.stream.write("\n")


def main(plans_path: Path, out_dir: Path, seed: int = 0,
         engine_timeout_s: float = 900.0) -> int:
    try:
        search, plans = plans_file.load(plans_path)
    except plans_file.PlansError as exc:
        print(f"llmfleet bench: {exc}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    run = run_search(search, plans, SearchOptions(out_dir / "logs", engine_timeout_s, seed),
                     TerminalProgress(plans, len(search.concurrency)))
    ranked = rank(run.results, search.target_concurrency)
    table = render(ranked, search, basis(run.results))
    write_outputs(run, ranked, search, out_dir)
    print(table)
    print(f"\n{len(plans)} plans in {time.monotonic() - started:.0f} s; profiles, ranking and "
          f"plot in {out_dir}/")
    return 0 if ranked and ranked[0].feasible else 1


def render(ranked: list[Ranked], search: Search, how: str) -> str:
    head = (f"{'#':>2}  {'plan':<20}{'conc':>5}{'p50 ms':>9}{'p95 ms':>9}{'TTFT95':>8}"
            f"{'TPOT95':>8}{'tok/s':>9}{'mem GiB':>9}{'$/Mtok':>9}  verdict")
    lines = [f"SLA: {search.sla_spec or '(none)'}; workload {search.workload_spec}; ranked "
             + ("by cost per million output tokens at each plan's best level meeting the SLA"
                if how == "cost" else
                f"by p50 latency at concurrency {search.target_concurrency}, then memory"),
             head, "-" * len(head)]
    for number, item in enumerate(ranked, 1):
        level = item.level
        if level is None:
            lines.append(f"{number:>2}  {item.name:<20}{'':>57}  failed: {item.reason}")
            continue
        v = level.summary.values()
        memory = level.memory_bytes
        verdict = "meets SLA" if item.feasible else item.reason
        if number == 1 and item.feasible:
            verdict = "CHOSEN, " + verdict
        lines.append(
            f"{number:>2}  {item.name:<20}{level.concurrency:>5}{_f(v['e2e_p50_ms'], 9, 0)}"
            f"{_f(v['e2e_p95_ms'], 9, 0)}{_f(v['ttft_p95_ms'], 8, 0)}{_f(v['tpot_p95_ms'], 8, 1)}"
            f"{_f(v['output_tokens_per_s'], 9, 0)}"
            f"{_f(None if memory is None else memory / GIB, 9, 2)}"
            f"{_f(item.usd_per_million, 9, 3)}  {verdict}")
    return "\n".join(lines)


def _f(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


PROFILE_FIELDS = (
    "plan", "instance_type", "model", "dtype", "max_num_seqs", "enable_prefix_caching",
    "kv_cache_dtype", "cpu_threads", "tensor_parallel_size", "concurrency", "requests",
    "failures", "error_rate", "mean_input_tokens", "mean_output_tokens", *LATENCY_METRICS,
    "output_tokens_per_s", "requests_per_s", "peak_rss_bytes", "peak_gpu_memory_bytes",
    "energy_j", "energy_per_output_token_j", "price_usd_hr", "usd_per_million_output_tokens",
    "meets_sla")


def profile_rows(run: SearchRun) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for result in run.results:
        plan = result.plan
        for level in result.levels:
            s, usage = level.summary, level.usage
            done = max(s.requests, 1)
            rows.append({
                "plan": plan.name, "instance_type": plan.instance_type, "model": plan.model,
                "dtype": plan.dtype, "max_num_seqs": plan.max_num_seqs,
                "enable_prefix_caching": plan.enable_prefix_caching,
                "kv_cache_dtype": plan.kv_cache_dtype, "cpu_threads": plan.cpu_threads,
                "tensor_parallel_size": plan.tensor_parallel_size,
                "concurrency": level.concurrency, "requests": s.requests,
                "failures": s.failures, "mean_input_tokens": s.prompt_tokens / done,
                "mean_output_tokens": s.output_tokens / done,
                **s.values(),
                "peak_rss_bytes": usage.peak_rss_bytes,
                "peak_gpu_memory_bytes": usage.peak_gpu_memory_bytes,
                "energy_j": usage.energy_j,
                "energy_per_output_token_j": (usage.energy_j / s.output_tokens
                                              if usage.energy_j is not None and s.output_tokens
                                              else None),
                "price_usd_hr": plan.price(),
                "usd_per_million_output_tokens": level.usd_per_million_tokens(plan.price()),
                "meets_sla": level.verdict.met,
            })
    return rows


def write_outputs(run: SearchRun, ranked: list[Ranked], search: Search, out: Path) -> None:
    _write_csv(out / "profiles.csv", PROFILE_FIELDS, profile_rows(run))
    _write_csv(out / "requests.csv",
               ("plan", "concurrency", "prompt_tokens", "output_tokens", "ttft_s", "e2e_s"),
               [{"plan": name, "concurrency": r.concurrency, "prompt_tokens": r.prompt_tokens,
                 "output_tokens": r.output_tokens, "ttft_s": r.ttft_s, "e2e_s": r.e2e_s}
                for name, r in run.requests])
    (out / "ranking.txt").write_text(render(ranked, search, basis(run.results)) + "\n")
    chosen = ranked[0].name if ranked and ranked[0].feasible else None
    (out / "result.json").write_text(json.dumps({
        "chosen": chosen, "basis": basis(run.results), "sla": search.sla_spec,
        "plans": [{"plan": r.name, "feasible": r.feasible, "reason": r.reason,
                   "concurrency": r.level.concurrency if r.level else None,
                   "usd_per_million_output_tokens": r.usd_per_million,
                   "values": r.level.summary.values() if r.level else None}
                  for r in ranked]}, indent=2) + "\n")
    plot(run, ranked, search, out / "bench.png")


def _write_csv(path: Path, fields: tuple[str, ...], rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def plot(run: SearchRun, ranked: list[Ranked], search: Search, path: Path) -> Path | None:
    """Latency against throughput per plan; None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        print("llmfleet bench: matplotlib is not installed; no plot", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = next((c for c in search.checks if c.metric in LATENCY_METRICS), None)
    metric = latency.metric if latency else "e2e_p50_ms"
    fig, ax = plt.subplots(figsize=(8, 5))
    for result in run.results:
        if not result.levels:
            continue
        xs = [lv.summary.output_tokens_per_s or 0.0 for lv in result.levels]
        ys = [lv.summary.values()[metric] or 0.0 for lv in result.levels]
        (line,) = ax.plot(xs, ys, "o-", label=result.plan.name)
        for lv, x, y in zip(result.levels, xs, ys, strict=True):
            ax.annotate(f"c={lv.concurrency}", (x, y), textcoords="offset points",
                        xytext=(4, 4), fontsize=8, color=line.get_color())
    if latency is not None:
        ax.axhline(latency.limit, color="#c0392b", ls="--", label=f"SLA {latency}")
    if ranked and ranked[0].feasible and ranked[0].level is not None:
        best = ranked[0].level
        ax.plot([best.summary.output_tokens_per_s or 0.0], [best.summary.values()[metric] or 0.0],
                "*", color="gold", markersize=20, markeredgecolor="black",
                label=f"chosen: {ranked[0].name}", zorder=5)
    ax.set_xlabel("output tokens/s")
    ax.set_ylabel(metric.replace("_", " ").replace(" ms", " (ms)"))
    ax.set_title(f"plan search: {search.workload_spec}, concurrency "
                 f"{', '.join(map(str, search.concurrency))}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no plan was measured", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
