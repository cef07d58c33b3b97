"""A local stand-in for EC2 instance metadata (IMDSv2) and for the one Auto Scaling call the
agent makes that moto does not implement (`CompleteLifecycleAction`, moto 5.2).

`FakeImds` serves metadata only with a session token from a PUT, as EC2 does, from a dict
a test changes while the agent polls (a notice appearing is a key set). `FakeLifecycle`
speaks the Auto Scaling query protocol for `CompleteLifecycleAction` and records each call;
it can fail the next calls on demand, which the real service does only under throttling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

TOKEN = "tok-123"
XMLNS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"


@dataclass
class FakeImds:
    """What `/latest/meta-data/<path>` answers (404 for a path not in `values`)."""

    values: dict[str, str] = field(default_factory=dict)
    tokens_issued: int = 0

    def app(self) -> Starlette:
        async def token(request: Request) -> Response:
            if not request.headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
                return Response(status_code=400)
            self.tokens_issued += 1
            return PlainTextResponse(TOKEN)

        async def meta(request: Request) -> Response:
            if request.headers.get("x-aws-ec2-metadata-token") != TOKEN:
                return Response(status_code=401)
            value = self.values.get(request.path_params["key"])
            return Response(status_code=404) if value is None else PlainTextResponse(value)

        return Starlette(routes=[Route("/latest/api/token", token, methods=["PUT"]),
                                 Route("/latest/meta-data/{key:path}", meta)])


@dataclass
class FakeLifecycle:
    """Records `CompleteLifecycleAction` calls; `fail_next` throttles that many first."""

    calls: list[dict[str, str]] = field(default_factory=list)
    call_times: list[float] = field(default_factory=list)
    fail_next: int = 0
    no_action: bool = False  # answer as the service does once no action waits

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            form = {k: str(v) for k, v in (await request.form()).items()}
            if form.get("Action") != "CompleteLifecycleAction":
                return _error(400, "InvalidAction", f"not faked: {form.get('Action')}")
            if self.fail_next > 0:
                self.fail_next -= 1
                return _error(400, "Throttling", "Rate exceeded")
            if self.no_action:
                return _error(400, "ValidationError", "No active Lifecycle Action found "
                              f"with instance ID {form.get('InstanceId')}")
            self.calls.append(form)
            self.call_times.append(time.monotonic())
            return Response(f'<CompleteLifecycleActionResponse xmlns="{XMLNS}">'
                            "<CompleteLifecycleActionResult/><ResponseMetadata>"
                            "<RequestId>req-1</RequestId></ResponseMetadata>"
                            "</CompleteLifecycleActionResponse>", media_type="text/xml")

        return Starlette(routes=[Route("/", endpoint, methods=["POST"])])


def _error(status: int, code: str, message: str) -> Response:
    return Response(f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>Sender</Type>'
                    f"<Code>{code}</Code><Message>{message}</Message></Error>"
                    "<RequestId>req-1</RequestId></ErrorResponse>",
                    status_code=status, media_type="text/xml")
