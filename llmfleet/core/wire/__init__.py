"""What one package sends and another reads, as pydantic models.

A body that crosses a package boundary (over HTTP or in process) is parsed
into one of these at the edge where it arrives; nothing downstream reads a
`dict` with `.get(...)`. `agent` holds the agent's `/status` body, which the
router's fleet view polls; `sizing` holds the planner's answer, which the web
console and the command line render; `scoring` holds the scored routing policy's
per-model figures, which calibration prints and the router's settings read.
"""
