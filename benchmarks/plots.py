"""Figures for the router benchmark: what a reader should see rather than read."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_router(results: dict[str, Any], out: Path) -> Path:
    """Three panels: router CPU against targets, real-vLLM rounds, RSS under held streams."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu, vllm, mem) = plt.subplots(1, 3, figsize=(16, 4.8))
    a = results["a_fake_upstream"]
    labels = ["per request\n(saturated)", "per request\n(1,000 req/s)", "per SSE event\n(bursts)",
              "per SSE event\n(one per write)"]
    values = [a["non_streaming"]["router_cpu_us_per_request"],
              a["non_streaming_paced_1000rps"]["router_cpu_us_per_request"],
              a["streaming_64_chunks"]["router_cpu_us_per_chunk"],
              a["streaming_paced_events"]["router_cpu_us_per_event"]]
    targets = [150, 150, 20, 20]
    bars = cpu.bar(labels, values, color=["#4878a8", "#7fa6cf", "#4878a8", "#7fa6cf"])
    cpu.scatter(labels, targets, marker="_", s=900, color="#c0392b", label="target", zorder=3)
    floor = a["non_streaming"]["bare_cpu_us_per_request"]
    cpu.axhline(floor, color="grey", ls=":", label=f"bare pass-through ({floor:.0f} us)")
    cpu.bar_label(bars, fmt="%.0f us")
    cpu.set_ylim(top=max(values) * 1.3)  # room for the labels and the legend
    cpu.set_ylabel("router CPU time (us)")
    cpu.set_title("(a) router CPU, fake engine, all features on")
    cpu.legend(loc="upper left")

    b = results.get("b_real_vllm")
    if b:
        rounds = range(1, len(b["rounds"]) + 1)
        vllm.plot(rounds, [r["direct_tokens_per_s"] for r in b["rounds"]], "o-", label="direct")
        vllm.plot(rounds, [r["router_tokens_per_s"] for r in b["rounds"]], "s-",
                  label="through router")
        vllm.set_xticks(list(rounds))
        vllm.set_ylim(bottom=0)
        vllm.set_xlabel("round (direct then router, alternated)")
        vllm.set_ylabel("output tokens/s")
        vllm.set_title("(b) real vLLM on 2 CPU cores: 32 streams x 128 tokens")
        vllm.legend()

    c = results["c_held_streams"]
    samples = c["rss_samples_mib"]
    mem.plot([i * 0.5 for i in range(len(samples))], samples)
    mem.set_ylim(bottom=0)
    mem.set_xlabel("seconds (two waves)")
    mem.set_ylabel("router RSS (MiB)")
    mem.set_title(f"(c) {c['streams']} concurrent slow streams, twice")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_agent(results: dict[str, Any], out: Path) -> Path:
    """Two panels: the agent's RSS over time, and its CPU share against the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, cpu) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, style in (("interval_10s", "-"), ("interval_1s", "--")):
        run = results[key]
        seconds = [s[0] for s in run["samples"]]
        mem.plot(seconds, [s[2] for s in run["samples"]], style,
                 label=f"interval {run['interval_s']:g} s")
    mem.axhline(80, color="#c0392b", ls=":", label="target 80 MiB")
    mem.set_ylim(0, 100)
    mem.set_xlabel("seconds since the first round")
    mem.set_ylabel("agent RSS (MiB)")
    mem.set_title("memory")
    mem.legend(loc="lower right")

    labels = [f"interval {results[k]['interval_s']:g} s" for k in ("interval_10s", "interval_1s")]
    values = [results[k]["cpu_pct_of_core"] for k in ("interval_10s", "interval_1s")]
    bars = cpu.bar(labels, values, color=["#4878a8", "#7fa6cf"])
    cpu.bar_label(bars, labels=[f"{v:.2f} %\n{results[k]['cpu_ms_per_round']:.0f} ms/round"
                                for v, k in zip(values, ("interval_10s", "interval_1s"),
                                                strict=True)])
    cpu.axhline(1.0, color="#c0392b", ls=":", label="target at 10 s: 1 % of a core")
    cpu.set_ylim(top=max([*values, 1.0]) * 1.4)
    cpu.set_ylabel("agent CPU (% of one core)")
    cpu.set_title("CPU, real vLLM + router scraped, moto as CloudWatch")
    cpu.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
