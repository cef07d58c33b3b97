"""moto in server mode, with two fixes the infrastructure apply needs.

moto 5.2 crashes (HTTP 500) when the last version of an S3 key is deleted while
a delete marker for it exists: it calls `dispose()` on every version and delete
markers have none. Emptying a versioned bucket, which `force_destroy` does on
every destroy, hits exactly that. A delete marker holds no data, so disposing of
it is a no-op; this adds that no-op.

moto also has no request context (aws:SecureTransport, aws:SourceArn) to test a
bucket-policy statement's condition against, and takes such a condition as met:
the platform's "deny s3:* when aws:SecureTransport is false" statement (every
bucket has one) then refused every object upload, although the provider's calls
are exactly what it admits. Here a conditioned statement that moto cannot
evaluate does not apply, as in AWS when its condition is not met.

Then moto's own server starts unchanged. Run as
`python -m tests.helpers.moto_server -H 127.0.0.1 -p PORT`.
"""

from __future__ import annotations

from typing import Any

from moto.iam.access_control import IAMPolicyStatement, PermissionResult
from moto.s3.models import FakeDeleteMarker
from moto.server import main


def _dispose(self: FakeDeleteMarker, garbage: bool = False) -> None:
    """A delete marker owns no buffer: nothing to release."""


if not hasattr(FakeDeleteMarker, "dispose"):
    FakeDeleteMarker.dispose = _dispose

_statement_permits = IAMPolicyStatement.is_action_permitted


def _is_action_permitted(self: IAMPolicyStatement, action: str, resource: str = "*",
                         principal: str | None = None,
                         incoming_condition_values: dict[str, str] | None = None,
                         ) -> PermissionResult:
    """A conditioned statement without request values to test neither allows nor denies."""
    statement: dict[str, Any] = self._statement
    if statement.get("Condition") and not incoming_condition_values:
        return PermissionResult.NEUTRAL
    return _statement_permits(self, action, resource, principal, incoming_condition_values)


IAMPolicyStatement.is_action_permitted = _is_action_permitted

if __name__ == "__main__":
    main()
