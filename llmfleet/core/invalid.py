"""What a pydantic validation error says, one "where: what" line per problem, without the
values given (pydantic's own text quotes the input, which may hold keys or a whole file)."""

from __future__ import annotations

from pydantic import ValidationError


def problems(exc: ValidationError, whole: str) -> list[str]:
    """One line per problem, `whole` naming what an error without a location is about."""
    return [f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)]
