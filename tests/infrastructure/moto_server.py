"""moto in server mode, with one fix the infrastructure apply needs.

moto 5.2 crashes (HTTP 500) when the last version of an S3 key is deleted while
a delete marker for it exists: it calls `dispose()` on every version and delete
markers have none. Emptying a versioned bucket, which `force_destroy` does on
every destroy, hits exactly that. A delete marker holds no data, so disposing of
it is a no-op; this adds that no-op and starts moto's own server unchanged.

Run as `python -m tests.infrastructure.moto_server -H 127.0.0.1 -p PORT`.
"""

from __future__ import annotations

from moto.s3.models import FakeDeleteMarker
from moto.server import main


def _dispose(self: FakeDeleteMarker, garbage: bool = False) -> None:
    """A delete marker owns no buffer: nothing to release."""


if not hasattr(FakeDeleteMarker, "dispose"):
    FakeDeleteMarker.dispose = _dispose  # type: ignore[attr-defined]

if __name__ == "__main__":
    main()
