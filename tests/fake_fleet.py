"""A fleet of fake Horizons in its own process, for tests that run the real console scripts against a few hundred.

`python -m tests.fake_fleet --port P --targets N` serves N fake Horizons on 127.0.0.1:P, Horizon i at
`/h/<i>/horizon` (`/api/stats`, `/api/workload`, `/api/masters` in the shapes of tests/payloads.py, bodies
serialised once). Horizon i's microservice runs `processes(i)` worker processes: never 0, so a 0 that reaches a
scaler's answer was made on the way, not here.

Every request is counted by target and by the value of its `X-Fleet-Client` header (a test gives each exporter its
own, through `${VAR}` in the shared config file), so a test can tell which process polled which Horizon:

* `GET /-/log` — `{"counts": {"<i>": {"<client>": requests}}, "since": <unix time of the last reset>}`
* `POST /-/log/reset` — start counting afresh
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Any

from aiohttp import web

from tests.payloads import topology_a

CLIENT_HEADER = "X-Fleet-Client"


def processes(i: int) -> int:
    """The worker processes Horizon i reports for its microservice: 4 to 23, never 0."""
    return 3 + 1 + i % 20


def payloads(i: int) -> dict[str, Any]:
    """Horizon i's three bodies: the reference payloads with supervisor-1 running 1 + i % 20 processes on `default`
    (the other supervisors add 1 on `emails` and 2 on `high,low`: `processes(i)` in all)."""
    stats, workload, masters = topology_a()
    default = processes(i) - 3
    for master in masters.values():
        master["supervisors"][0]["processes"]["redis:default"] = default
    workload[0]["processes"] = default
    stats["processes"] = processes(i)
    return {"stats": stats, "workload": workload, "masters": masters}


def create_app(targets: int) -> web.Application:
    bodies = [{k: json.dumps(v).encode() for k, v in payloads(i).items()} for i in range(targets)]
    counts: Counter[tuple[str, str]] = Counter()
    since = [time.time()]

    async def horizon(request: web.Request) -> web.Response:
        target = request.match_info["target"]
        counts[target, request.headers.get(CLIENT_HEADER, "")] += 1
        try:
            body = bodies[int(target)][request.match_info["endpoint"]]
        except (ValueError, IndexError, KeyError):
            return web.Response(status=404, text="not found")
        return web.Response(body=body, content_type="application/json")

    async def log(request: web.Request) -> web.Response:
        out: dict[str, dict[str, int]] = {}
        for (target, client), n in counts.items():
            out.setdefault(target, {})[client] = n
        return web.json_response({"counts": out, "since": since[0]})

    async def reset(request: web.Request) -> web.Response:
        counts.clear()
        since[0] = time.time()
        return web.json_response({"since": since[0]})

    app = web.Application()
    app.router.add_get("/h/{target}/horizon/api/{endpoint}", horizon)
    app.router.add_get("/-/log", log)
    app.router.add_post("/-/log/reset", reset)
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--targets", type=int, required=True)
    args = p.parse_args()
    web.run_app(create_app(args.targets), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
