"""The bottom floor: what several of the project's packages share.

The AWS instance catalogue, engine and child-process control, logging, the
Prometheus scrape arithmetic and serving statistics, NVML readings, and the
wire models one package sends and another reads. Nothing here imports from
the router, the agent, the planner, the load tests or the command line; the
floors contract in pyproject.toml (`make lint-imports`) keeps it that way.
"""
