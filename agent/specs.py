"""Every metric the agent publishes to CloudWatch, in one table: name, unit, scale, meaning.

A round's figures are keyed by these specs (`Readings`), never by name strings;
`agent.datapoints` turns them into datapoints, `agent.report` into a table and
`agent.collect` into the `/status` body, all from the same entries. The names are
what the dashboards, alarms and the scaling policy read
(tests/infrastructure/test_metric_names.py checks them). CloudWatch has no unit for
watts, joules, megahertz, degrees or dollars: those go out as `None`, with the unit in
the name. Ratios go out as percentages (`scale`). Serving and per-token figures
describe the model being served rather than the machine (`per_model`): they are also
published under `AutoScalingGroupName` + `Model`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """One published metric."""

    name: str
    unit: str  # a CloudWatch unit
    description: str
    scale: float = 1  # measured value -> published value (a ratio -> a percentage)
    per_model: bool = False  # also under AutoScalingGroupName + Model
    # Under the group's dimension even from an instance outside its capacity (one a warm pool
    # prepares): what the fleet spends and how long its starts take, which scaling does not
    # read, unlike the load and latency figures.
    fleet_wide: bool = False


Readings = dict[MetricSpec, float | None]  # None where nothing was measured


def _serving(name: str, unit: str, description: str, scale: float = 1) -> MetricSpec:
    return MetricSpec(name, unit, description, scale, per_model=True)


# ServingStats field -> its metric, in publishing order.
SERVING: dict[str, MetricSpec] = {
    "latency_p50_s": _serving("LatencyP50", "Seconds", "Median end-to-end request latency."),
    "latency_p95_s": _serving("LatencyP95", "Seconds", "95th percentile request latency."),
    "latency_p99_s": _serving("LatencyP99", "Seconds", "99th percentile request latency."),
    "ttft_p50_s": _serving("TTFTP50", "Seconds", "Median time to first token."),
    "ttft_p95_s": _serving("TTFTP95", "Seconds", "95th percentile time to first token."),
    "ttft_p99_s": _serving("TTFTP99", "Seconds", "99th percentile time to first token."),
    "itl_p50_s": _serving("InterTokenLatencyP50", "Seconds", "Median inter-token latency."),
    "itl_p95_s": _serving("InterTokenLatencyP95", "Seconds",
                          "95th percentile inter-token latency."),
    "requests_per_s": _serving("RequestsPerSecond", "Count/Second",
                               "Requests answered, per second."),
    "error_rate": _serving("ErrorRate", "Percent", "Share of requests answered 5xx.", 100),
    "prompt_tokens_per_s": _serving("PromptTokensPerSecond", "Count/Second",
                                    "Prompt tokens processed, per second."),
    "generation_tokens_per_s": _serving("GenerationTokensPerSecond", "Count/Second",
                                        "Output tokens generated, per second."),
    "requests_running": _serving("RequestsRunning", "Count", "Requests being generated."),
    "requests_waiting": _serving("RequestsWaiting", "Count", "Requests queued in the engine."),
    "kv_cache_usage": _serving("KVCacheUsage", "Percent", "KV cache in use, averaged.", 100),
}

GPU_UTILIZATION = MetricSpec("GPUUtilization", "Percent",
                             "Time a kernel ran, averaged over the GPUs.")
GPU_MEMORY_USED = MetricSpec("GPUMemoryUsed", "Bytes", "GPU memory in use, summed.")
GPU_MEMORY_TOTAL = MetricSpec("GPUMemoryTotal", "Bytes", "GPU memory, summed.")
GPU_POWER = MetricSpec("GPUPowerWatts", "None", "Power draw in watts, summed.")
GPU_TEMPERATURE = MetricSpec("GPUTemperatureCelsius", "None", "The hottest GPU, in °C.")
GPU_SM_CLOCK = MetricSpec("GPUSMClockMHz", "None", "SM clock in MHz, averaged.")

COST_PER_HOUR = MetricSpec("CostPerHourUSD", "None",
                           "The instance's hourly price in its market, in USD.",
                           fleet_wide=True)
COST_PER_MILLION_OUTPUT_TOKENS = MetricSpec(
    "CostPerMillionOutputTokensUSD", "None",
    "The hourly price spread over the output tokens of an hour at this rate.",
    per_model=True)
GPU_ENERGY = MetricSpec("GPUEnergyJoules", "None", "Energy the GPUs used over the interval.",
                        fleet_wide=True)
JOULES_PER_OUTPUT_TOKEN = MetricSpec("JoulesPerOutputToken", "None",
                                     "GPU energy over the interval per output token.",
                                     per_model=True)

TIME_TO_SERVING = MetricSpec("TimeToServingSeconds", "Seconds",
                             "Boot to the router's first ready answer; once per boot.",
                             fleet_wide=True)

GPU = (GPU_UTILIZATION, GPU_MEMORY_USED, GPU_MEMORY_TOTAL, GPU_POWER, GPU_TEMPERATURE,
       GPU_SM_CLOCK)
COST_AND_ENERGY = (COST_PER_HOUR, COST_PER_MILLION_OUTPUT_TOKENS, GPU_ENERGY,
                   JOULES_PER_OUTPUT_TOKEN)
ALL: tuple[MetricSpec, ...] = (*SERVING.values(), *GPU, *COST_AND_ENERGY, TIME_TO_SERVING)
