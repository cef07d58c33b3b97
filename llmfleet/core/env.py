"""Settings values as the environment spells them.

The router and the agent read lists from environment variables and from TOML;
both accept the same spellings, so the rule lives here once.
"""

from __future__ import annotations

import json
from typing import Any


def split_csv(value: Any) -> Any:
    """A list from "a, b" or a JSON array; other values (already lists) pass through."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value
