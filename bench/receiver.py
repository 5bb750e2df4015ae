"""A webhook receiver for the benchmarks, in its own process: answers every POST with
`200 {"ok": true}` after `--delay` seconds (aiohttp's server: any number wait at once, and
accepting hundreds of connections costs milliseconds, as with a production receiver).
Prints its port on stdout, then serves until stdin closes.

    python -m bench.receiver --delay 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--delay", type=float, default=0.2, help="seconds before each answer")
    delay = p.parse_args().delay

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{path:.*}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # The default backlog (128) would drop connections when hundreds connect at once.
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
