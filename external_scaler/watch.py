"""`python -m external_scaler.watch`: print, once a second, what KEDA would get from a running scaler for one trigger.

A plain gRPC client over the generated stubs: GetMetricSpec once, StreamIsActive in the background, and every
tick GetMetrics (once in `average` mode for the raw value, once in the trigger's own mode for what the HPA sees)
and IsActive. gRPC errors become one line each (code and details), never a traceback; Ctrl-C exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from ._proto import externalscaler_pb2 as pb
from ._proto import externalscaler_pb2_grpc as pb_grpc
from .metadata import METRICS, MODES

RPC_TIMEOUT = 2.0


@dataclass
class Tick:
    """One line's worth of answers; `error` replaces the numbers when a call failed."""

    raw: float = 0.0
    threshold: float = 0.0
    mode: str = "reached"
    metric: float = 0.0
    target: float = 0.0
    active: bool = False
    error: str | None = None


def _g(value: float) -> str:
    return f"{value:g}"


def format_line(when: float, subject: str, tick: Tick, stream: str) -> str:
    """`13:02:07 orders processes=9 target=8 (reached mode → metric 2 / target 1) active=True  [stream: active]`."""
    clock = time.strftime("%H:%M:%S", time.localtime(when))
    if tick.error is not None:
        return f"{clock} {subject} error: {tick.error}  [stream: {stream}]"
    return (
        f"{clock} {subject}={_g(tick.raw)} target={_g(tick.threshold)} "
        f"({tick.mode} mode → metric {_g(tick.metric)} / target {_g(tick.target)}) active={tick.active}  "
        f"[stream: {stream}]"
    )


def _rpc_error(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {exc.details() or '-'}"


class Watch:
    """The client side of one trigger: the refs it sends and the last state the stream pushed."""

    def __init__(self, stub: pb_grpc.ExternalScalerStub, args: argparse.Namespace) -> None:
        self.stub = stub
        meta = {"scalerAddress": args.scaler, "microservice": args.microservice, "metric": args.metric,
                "threshold": args.threshold, "thresholdMode": args.mode,
                "activationThreshold": args.activation_threshold}  # fmt: skip
        if args.queue is not None:
            meta["queue"] = args.queue
        self.mode, self.threshold = args.mode, float(args.threshold)
        self.ref = pb.ScaledObjectRef(name="watch", namespace="local", scalerMetadata=meta)
        self.raw_ref = pb.ScaledObjectRef(name="watch", namespace="local",
                                          scalerMetadata={**meta, "thresholdMode": "average"})  # fmt: skip
        queue = f"[{args.queue}]" if args.queue is not None else ""
        self.subject = f"{args.microservice} {args.metric}{queue}"
        self.metric_name: str | None = None
        self.target = 0.0
        self.stream = "no push yet"

    async def follow_stream(self) -> None:
        """Keep StreamIsActive open; `stream` is the last push, or why the stream is not open."""
        while True:
            call = self.stub.StreamIsActive(self.ref)
            try:
                async for answer in call:
                    self.stream = "active" if answer.result else "inactive"
                self.stream = "ended by the scaler"
            except grpc.aio.AioRpcError as exc:
                self.stream = exc.code().name
            finally:
                call.cancel()
            await asyncio.sleep(1.0)

    async def tick(self) -> Tick:
        try:
            if self.metric_name is None:
                spec = (await self.stub.GetMetricSpec(self.ref, timeout=RPC_TIMEOUT)).metricSpecs[0]
                self.metric_name, self.target = spec.metricName, spec.targetSizeFloat
            seen = await self._metric(self.ref)
            raw = seen if self.mode == "average" else await self._metric(self.raw_ref)
            active = (await self.stub.IsActive(self.ref, timeout=RPC_TIMEOUT)).result
        except grpc.aio.AioRpcError as exc:
            return Tick(error=_rpc_error(exc))
        return Tick(raw, self.threshold, self.mode, seen, self.target, active)

    async def _metric(self, ref: pb.ScaledObjectRef) -> float:
        request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=self.metric_name)
        return (await self.stub.GetMetrics(request, timeout=RPC_TIMEOUT)).metricValues[0].metricValueFloat


async def watch(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with grpc.aio.insecure_channel(args.scaler) as channel:
        client = Watch(pb_grpc.ExternalScalerStub(channel), args)
        stream = asyncio.create_task(client.follow_stream(), name="watch-stream")
        try:
            printed, start = 0, time.monotonic()
            while args.count is None or printed < args.count:
                # Ticks on a fixed schedule: a slow answer delays one line, not every later one.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, start + (printed + 1) * args.interval - time.monotonic())):
                        await stop.wait()
                if stop.is_set():
                    break
                tick = await client.tick()
                print(format_line(time.time(), client.subject, tick, client.stream), flush=True)
                printed += 1
        finally:
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m external_scaler.watch", description=__doc__.splitlines()[0])
    parser.add_argument("microservice", help="the microservice as the exporter names it")
    parser.add_argument("--scaler", default="127.0.0.1:6000", help="the scaler's gRPC address (default %(default)s)")
    parser.add_argument("--metric", default="processes", choices=METRICS, help="(default %(default)s)")
    parser.add_argument("--queue", help="one queue instead of the whole microservice")
    parser.add_argument("--threshold", default="8", help="trigger threshold (default %(default)s)")
    parser.add_argument("--mode", default="reached", choices=MODES, help="thresholdMode (default %(default)s)")
    parser.add_argument("--activation-threshold", default="0", help="(default %(default)s)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between lines (default %(default)s)")
    parser.add_argument("--count", type=int, help="stop after this many lines (default: until Ctrl-C)")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error(f"--interval: expected a number of seconds > 0, got {args.interval:g}")
    if args.count is not None and args.count < 1:
        parser.error(f"--count: expected a number of lines ≥ 1, got {args.count}")
    try:
        float(args.threshold)
    except ValueError:
        parser.error(f"--threshold: expected a number, got {args.threshold!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(watch(args))
    except KeyboardInterrupt:  # Ctrl-C before the loop's own handler is installed
        return 0


if __name__ == "__main__":
    sys.exit(main())
