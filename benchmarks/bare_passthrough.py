"""The floor for router overhead: a pure-ASGI pass-through with no features.

It reads the body, posts it upstream with aiohttp and returns the answer:
no auth, limits, validation, metrics or logs. The router benchmark runs it
beside the router, so the router's feature cost is measured against it.

    UPSTREAM=http://127.0.0.1:8001 python -m benchmarks.bare_passthrough PORT
"""

from __future__ import annotations

import os
import sys

import aiohttp
import uvicorn
from starlette.types import Receive, Scope, Send


class BarePassThrough:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        assert self.session is not None
        async with self.session.post(self.upstream + scope["path"], data=body,
                                     headers={"content-type": "application/json"}) as resp:
            data = await resp.read()
        await send({"type": "http.response.start", "status": resp.status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main() -> None:
    uvicorn.run(BarePassThrough(os.environ["UPSTREAM"]), host="127.0.0.1",
                port=int(sys.argv[1]), loop="uvloop", http="httptools", access_log=False,
                log_level="warning", proxy_headers=False)


if __name__ == "__main__":
    main()
