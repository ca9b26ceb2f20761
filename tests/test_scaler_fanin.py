"""Several exporters (shards) behind one scaler: the merge by microservice, handoffs, one shard down, dns+ discovery."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler.discovery import NoAddresses, parse_exporter, resolve
from external_scaler.exporter_auth import ExporterAuth, ExporterCredentials
from external_scaler.fanin import Claim, FanInSource, claim, ranked
from external_scaler.metadata import Trigger
from external_scaler.readings import ExporterView, Unavailable, UnknownMicroservice
from tests.certs import CA
from tests.scaler_fixtures import (
    FakeExporter,
    microservice,
    ref,
    running_scaler,
    scaler_with_metrics,
    scrape,
    wait_until,
)

FAST = {"backoff_max": 0.2}


def fan_in(*exporters: FakeExporter | str, max_staleness: float = 10.0, **kw: object) -> FanInSource:
    specs = [parse_exporter(e if isinstance(e, str) else e.url) for e in exporters]
    return FanInSource(specs, max_staleness, follower_options=FAST, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def shards() -> AsyncIterator[tuple[FakeExporter, FakeExporter]]:
    """Shard a owns orders and payments, shard b owns billing."""
    a = FakeExporter(orders=microservice(9.0), payments=microservice(4.0, target="payments"))
    b = FakeExporter(billing=microservice(2.0, target="billing"))
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


async def _value(stub, microservice_name: str) -> float:  # type: ignore[no-untyped-def]
    meta = {"microservice": microservice_name, "thresholdMode": "average"}
    spec = await stub.GetMetricSpec(ref(**meta))
    request = pb.GetMetricsRequest(scaledObjectRef=ref(**meta), metricName=spec.metricSpecs[0].metricName)
    return (await stub.GetMetrics(request)).metricValues[0].metricValueFloat


async def _code(stub, microservice_name: str) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        await stub.IsActive(ref(microservice=microservice_name))
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


# -- the merge rule, pure -----------------------------------------------------------------------------------


def _view(microservices: dict[str, dict], targets: dict[str, dict] | None = None) -> ExporterView:
    return ExporterView(1, 0.0, microservices, targets=targets or {})


def test_the_freshest_reading_wins_then_the_owner_then_the_url():
    newest, older = Claim("http://b", 100.0, True), Claim("http://a", 99.0, False)
    assert ranked([older, newest]) == [newest, older]  # fresher even though handed off
    owner, given = Claim("http://b", 100.0, False), Claim("http://a", 100.0, True)
    assert ranked([given, owner]) == [owner, given]  # a tie: the owner's copy
    first, second = Claim("http://a", 100.0, False), Claim("http://b", 100.0, False)
    assert ranked([second, first]) == ranked([first, second]) == [first, second]  # a full tie: the URL
    never = Claim("http://0", None, False)
    assert ranked([never, second]) == [second, never]  # a reading before none


def test_two_targets_reporting_one_microservice_answer_from_one_for_good():
    """core-eu and core-us both map orders, on different shards: the answer must not flip with every poll."""
    eu, us = Claim("http://a", 100.0, False, "core-eu"), Claim("http://b", 101.0, False, "core-us")
    assert ranked([us, eu])[0] == eu
    eu_later = Claim("http://a", 102.0, False, "core-eu")
    assert ranked([us, eu_later])[0] == eu_later  # whoever polled last
    # Within one target (a handoff, or a rollout's overlap), the freshest still wins.
    old, new = Claim("http://a", 100.0, True, "core-eu"), Claim("http://b", 101.0, False, "core-eu")
    assert ranked([old, new])[0] == new
    assert ranked([Claim("http://a", 102.0, True, "core-eu"), new])[0].fetched_at == 102.0


def test_handed_off_is_read_from_the_target_or_the_microservice():
    entry = microservice(9.0, fetched_at=50.0)
    target = entry["target"]
    assert claim("u", _view({"orders": entry}), "orders") == Claim("u", 50.0, False, target)
    marked = _view({"orders": entry}, {target: {"handed_off": True}})
    assert claim("u", marked, "orders") == Claim("u", 50.0, True, target)
    assert claim("u", _view({"orders": {**entry, "handed_off": True}}), "orders") == Claim("u", 50.0, True, target)
    assert claim("u", _view({"orders": microservice(None)}), "orders") == Claim("u", None, False, target)
    assert claim("u", _view({"orders": entry}), "billing") is None


def test_exporter_values():
    plain = parse_exporter("http://127.0.0.1:9108/")
    assert (plain.dns, plain.url, plain.server_hostname) == (False, "http://127.0.0.1:9108", None)
    dns = parse_exporter("dns+https://exporter-shards.shop.svc:9108/base")
    assert (dns.dns, dns.host, dns.port, dns.server_hostname) == (True, "exporter-shards.shop.svc", 9108,
                                                                  "exporter-shards.shop.svc")  # fmt: skip
    assert dns.address_url("10.0.0.5") == "https://10.0.0.5:9108/base"
    assert dns.address_url("fd00::5") == "https://[fd00::5]:9108/base"
    assert parse_exporter("dns+http://shards").port == 80
    assert parse_exporter("dns+http://shards:9108").server_hostname is None  # nothing to verify over http
    for bad in ("127.0.0.1:9108", "dns+127.0.0.1:9108", "srv+http://x:1", "http://x:99999", ""):
        with pytest.raises(ValueError, match="expected an http"):
            parse_exporter(bad)
    with pytest.raises(ValueError, match="credentials inside the URL are refused") as info:
        parse_exporter("dns+https://keda:s3cret@shards:9108")
    assert "s3cret" not in str(info.value)


# -- several exporters over HTTP ------------------------------------------------------------------------------


async def test_two_shards_with_disjoint_microservices_both_answer(shards):
    a, b = shards
    source = fan_in(a, b)
    async with running_scaler(source) as scaler:
        await wait_until(lambda: all(f.fresh for f in source.followers.values()))
        assert await _value(scaler.stub, "orders") == 9.0
        assert await _value(scaler.stub, "payments") == 4.0
        assert await _value(scaler.stub, "billing") == 2.0
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await scaler.stub.IsActive(ref(microservice="shipping"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND  # every shard answers and none has it
    assert "(the exporters report: billing, orders, payments)" in (info.value.details() or "")


async def test_a_handoff_is_read_from_the_freshest_copy_alike_on_two_replicas(shards):
    # The old owner's URL sorts first, so only the handed_off rule can make the new owner win a tie.
    old, new = sorted(shards, key=lambda e: e.url)
    now = time.time()
    # `old` gave orders to `new` and keeps polling it for the grace period; `new` polled it more recently.
    old.handed_off = {"orders"}
    old.publish(orders=microservice(9.0, fetched_at=now - 2))
    new.publish(orders=microservice(7.0, fetched_at=now - 1))
    one, two = fan_in(old, new), fan_in(new, old)  # the order of the flags does not matter

    def both(value: float) -> bool:
        return one.read_now(Trigger("orders")) == two.read_now(Trigger("orders")) == value

    async with running_scaler(one) as first, running_scaler(two) as second:
        await wait_until(lambda: all(f.fresh for s in (one, two) for f in s.followers.values()))
        assert [await _value(s.stub, "orders") for s in (first, second)] == [7.0, 7.0]

        old.publish(orders=microservice(8.0, fetched_at=now))  # the old owner polled it last: freshest wins
        await wait_until(lambda: both(8.0))
        # Arriving last is not being freshest: the exporters' own times decide, whatever reached us when.
        new.publish(orders=microservice(7.5, fetched_at=now - 0.5))
        await wait_until(lambda: all(s.followers[new.url].view.version == new.version for s in (one, two)))
        assert both(8.0)

        new.publish(orders=microservice(6.0, fetched_at=now))  # the same instant: the owner's copy wins the tie
        await wait_until(lambda: both(6.0))
        assert [await _value(s.stub, "orders") for s in (first, second)] == [6.0, 6.0]

        old.handed_off = set()  # neither is handed off: the exporter whose URL sorts first
        old.publish(orders=microservice(5.0, fetched_at=now))
        await wait_until(lambda: both(5.0))


async def test_one_shard_down_makes_only_its_microservices_unavailable(shards):
    a, b = shards
    source = fan_in(a, b, max_staleness=2.0)
    async with scaler_with_metrics(source) as (scaler, url):
        await wait_until(lambda: all(f.fresh for f in source.followers.values()))
        health = health_pb2_grpc.HealthStub(scaler.channel)
        await b.stop()
        # Until b's microservices turn UNAVAILABLE, and a while after, a's keep their exact values: no error, no 0.
        seen_unavailable_at = None
        async with asyncio.timeout(20):
            while seen_unavailable_at is None or time.monotonic() - seen_unavailable_at < 1.0:
                assert await _value(scaler.stub, "orders") == 9.0
                assert await _value(scaler.stub, "payments") == 4.0
                if seen_unavailable_at is None and await _code(scaler.stub, "billing") == grpc.StatusCode.UNAVAILABLE:
                    seen_unavailable_at = time.monotonic()
                await asyncio.sleep(0.02)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await scaler.stub.IsActive(ref(microservice="billing"))
        assert f"exporter {b.url}/api/v1/snapshot: unreachable" in (info.value.details() or "")
        # A microservice no answering shard has may be on the silent one: UNAVAILABLE, not NOT_FOUND.
        assert await _code(scaler.stub, "shipping") == grpc.StatusCode.UNAVAILABLE
        status = await health.Check(health_pb2.HealthCheckRequest(service="externalscaler.ExternalScaler"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING  # it still answers for a's microservices
        scraped = await scrape(url)
        assert scraped.value("horizon_scaler_exporter_fresh", exporter=a.url) == 1
        assert scraped.value("horizon_scaler_exporter_fresh", exporter=b.url) == 0
        assert scraped.value("horizon_scaler_source_fresh") == 1

        b.version = 0  # it comes back, restarted
        await b.start()
        b.publish(billing=microservice(3.0, target="billing"))
        await wait_until(lambda: source.followers[b.url].fresh)
        assert await _value(scaler.stub, "billing") == 3.0
        assert await _code(scaler.stub, "shipping") == grpc.StatusCode.NOT_FOUND
        assert (await scrape(url)).value("horizon_scaler_exporter_fresh", exporter=b.url) == 1


async def test_a_change_on_any_shard_is_pushed(shards):
    a, b = shards
    source = fan_in(a, b)
    async with running_scaler(source, heartbeat=30.0) as scaler:
        await wait_until(lambda: all(f.fresh for f in source.followers.values()))
        stream = scaler.stub.StreamIsActive(ref(microservice="billing", activationThreshold="5"))
        assert (await asyncio.wait_for(stream.read(), 5)).result is False
        b.publish(billing=microservice(6.0, target="billing"))
        assert (await asyncio.wait_for(stream.read(), 5)).result is True
        stream.cancel()


async def test_no_shard_answering_is_not_serving(shards):
    a, b = shards
    await a.stop()
    await b.stop()
    source = fan_in(a, b)
    await source.start()
    try:
        await wait_until(lambda: "2 exporters, 0 fresh" in source.description and "unreachable" in source.description)
        assert not source.fresh and source.age is None
        with pytest.raises(Unavailable, match="2 of 2 do not"):
            source.read_now(Trigger("orders"))
    finally:
        await source.close()


# -- dns+ ------------------------------------------------------------------------------------------------------


class Resolver:
    """A stand-in for DNS: `answer` is what the next lookup returns (a list of addresses, or an exception)."""

    def __init__(self, answer: Sequence[str] | Exception) -> None:
        self.answer = answer
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append((host, port))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
async def pods() -> AsyncIterator[tuple[FakeExporter, FakeExporter]]:
    """Two shard pods on one port, at 127.0.0.1 and 127.0.0.2, as a headless Service lists them."""
    a = FakeExporter(orders=microservice(9.0))
    await a.start()
    b = FakeExporter(host="127.0.0.2", port=a.port, billing=microservice(2.0, target="billing"))
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


async def test_dns_addresses_are_followed_as_they_come_and_go(pods):
    a, b = pods
    resolver = Resolver(["127.0.0.1"])
    spec = parse_exporter(f"dns+http://exporter-shards.shop.svc:{a.port}")
    source = FanInSource([spec], 2.0, resolver=resolver, resolve_interval=3600, follower_options=FAST)
    await source.start()
    try:
        await wait_until(lambda: a.url in source.followers and source.followers[a.url].fresh)
        assert resolver.asked == [("exporter-shards.shop.svc", a.port)]
        assert source.read_now(Trigger("orders")) == 9.0
        assert isinstance(_raised(source, "billing"), UnknownMicroservice)

        resolver.answer = ["127.0.0.1", "127.0.0.2"]  # a new shard pod
        await source.resolve_once(spec)
        await wait_until(lambda: source.followers[b.url].fresh)
        assert source.read_now(Trigger("billing")) == 2.0

        resolver.answer = OSError("temporary failure")  # a failed lookup keeps what was listed
        await source.resolve_once(spec)
        assert sorted(source.followers) == [a.url, b.url]
        assert "lookup failed" in source.description

        resolver.answer = ["127.0.0.2"]  # pod a leaves DNS, but answers still: kept while its feed is fresh
        await source.resolve_once(spec)
        assert source.read_now(Trigger("orders")) == 9.0
        await a.stop()
        await wait_until(lambda: not source.followers[a.url].fresh)
        await source.resolve_once(spec)  # stale and unlisted: dropped
        assert sorted(source.followers) == [b.url]
        assert source.read_now(Trigger("billing")) == 2.0
        lost = _raised(source, "orders")  # gone with its shard: UNAVAILABLE, not NOT_FOUND
        assert isinstance(lost, Unavailable) and "left DNS" in str(lost)

        resolver.answer = NoAddresses(-2, "Name or service not known")  # no ready pod at all
        await source.resolve_once(spec)
        assert "0 address(es)" in source.description
        assert source.read_now(Trigger("billing")) == 2.0  # b is still fresh, so it is still followed
    finally:
        await source.close()


def _raised(source: FanInSource, name: str) -> Exception:
    with pytest.raises(Exception) as info:
        source.read_now(Trigger(name))
    return info.value


async def test_dns_with_tls_checks_the_certificate_against_the_service_name(tmp_path):
    ca = CA()
    cert, key = ca.issue("exporter", names=("exporter-shards.shop.svc",)).write(tmp_path, "server")  # no IP SAN
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert, key)
    exporter = FakeExporter(ssl=server_ssl, orders=microservice(9.0))
    await exporter.start()
    credentials = ExporterCredentials(ExporterAuth(ca_file=str(tmp_path / "ca.crt")))
    by_name = FanInSource([parse_exporter(f"dns+https://exporter-shards.shop.svc:{exporter.port}")], 10.0,
                          credentials=credentials, resolver=Resolver(["127.0.0.1"]), follower_options=FAST)  # fmt: skip
    by_address = FanInSource([parse_exporter(exporter.url)], 10.0, credentials=credentials, follower_options=FAST)
    await by_name.start()
    await by_address.start()
    try:
        await wait_until(lambda: by_name.fresh and "unreachable" in by_address.description)
        assert by_name.read_now(Trigger("orders")) == 9.0
        assert "certificate" in by_address.description.lower()  # the same certificate does not name 127.0.0.1
    finally:
        await by_name.close()
        await by_address.close()
        await exporter.stop()


async def test_the_system_resolver_finds_localhost():
    addresses = await resolve("localhost", 9108)
    assert "127.0.0.1" in addresses or "::1" in addresses


async def test_dns_mode_over_the_system_resolver(shards):
    a, _ = shards
    spec = parse_exporter(f"dns+http://localhost:{a.port}")
    source = FanInSource([spec], 10.0, follower_options=FAST)
    async with running_scaler(source) as scaler:
        # localhost may also be ::1, where nothing listens: that follower is unreachable, the other answers.
        await wait_until(lambda: source.fresh)
        assert await _value(scaler.stub, "orders") == 9.0


async def test_the_status_page_sees_every_shards_microservices_from_the_chosen_copy(shards):
    old, new = sorted(shards, key=lambda e: e.url)
    now = time.time()
    old.handed_off = {"orders"}
    old.publish(orders=microservice(9.0, fetched_at=now - 2))
    new.publish(orders=microservice(7.0, fetched_at=now - 1), billing=microservice(2.0, target="billing"))
    source = fan_in(old, new)
    await source.start()
    try:
        await wait_until(lambda: all(f.fresh for f in source.followers.values()))
        merged = source.microservices()
        assert set(merged) >= {"orders", "billing"}
        assert merged["orders"]["processes"] == 7.0 == source.read_now(Trigger("orders"))
    finally:
        await source.close()
