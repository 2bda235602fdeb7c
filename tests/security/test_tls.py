"""TLS with a throw-away CA (``security.testing``): two real replicas (uvicorn HTTPS, grpc.aio
over TLS) and a real HAProxy front door with TLS on its listeners and to the replicas, all on
127.0.0.1. A client trusting the CA is answered; a plaintext client, or one trusting another CA,
is refused before any answer. Plus the files' errors and the rendered HAProxy lines."""

from __future__ import annotations

import asyncio
import csv
import doctest
import http.client
import importlib
import io
import socket
import ssl
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))

from serving_factory import build_artifacts

from bench.loadgen.errors import ConfigError
from bench.loadgen.outcomes import Status
from bench.loadgen.transports import TransportSpec, make_transport
from security.testing import PKI, make_test_pki
from security.tls import (
    TLSFileError,
    TLSFiles,
    cert_and_key_pem,
    client_context,
    grpc_channel_credentials,
    server_context,
    tls_files,
)
from serving.app import AppConfig
from serving.client import Client
from serving.config import ServeSettings, resolve_paths
from serving.errors import ClientError
from serving.frontdoor import FrontDoor, FrontDoorConfig, render_config
from serving.proto import recdrill_pb2 as pb
from serving.proto import recdrill_pb2_grpc as pbg
from serving.retry import RetryPolicy
from serving.schemas import RecommendRequest
from serving.server import Endpoint, EntryServer
from serving.service import RecommendService, ServiceConfig
from serving.source import DirectorySource
from serving.testing import free_port, wait_until

BODY = b'{"user_id": "u1", "k": 3}'


@dataclass(frozen=True)
class Stack:
    pki: PKI
    other: PKI  # an unrelated CA
    endpoints: tuple[Endpoint, ...]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("tls")
    pki, other = make_test_pki(root / "pki", client=True), make_test_pki(root / "other")
    arts = build_artifacts(root / "artifacts", versions=("v1",))
    servers = []
    for name in ("r0", "r1"):
        svc = RecommendService(DirectorySource(str(arts.root), str(arts.public_key)),
                               replica=name, node="n0", config=ServiceConfig())
        svc.load("v1")
        servers.append(EntryServer(svc, AppConfig(), "127.0.0.1", 0, 0, tls=pki.server_files))
    try:
        yield Stack(pki, other, tuple(s.start() for s in servers))
    finally:
        for s in servers:
            s.stop()


def _https_post(url: str, ca: Path | None) -> dict[str, object]:
    import json

    ctx = client_context(ca) if ca is not None else None
    req = urllib.request.Request(url + "/v1/recommend", data=BODY,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _grpc_recommend(target: str, ca: Path | None) -> pb.RecommendResponse:
    channel = (grpc.insecure_channel(target) if ca is None
               else grpc.secure_channel(target, grpc_channel_credentials(ca)))
    with channel:
        reply: pb.RecommendResponse = pbg.RecommenderStub(channel).Recommend(
            pb.RecommendRequest(user_id="u1", k=3), timeout=5)
        return reply


# --- one replica -------------------------------------------------------------------------


def test_https_and_grpc_over_tls_answer_a_client_trusting_the_ca(stack: Stack) -> None:
    ep = stack.endpoints[0]
    assert ep.tls and ep.http_url.startswith("https://127.0.0.1:")
    assert len(_https_post(ep.http_url, stack.pki.ca_cert)["items"]) == 3  # type: ignore[arg-type]
    assert len(_grpc_recommend(ep.grpc_target, stack.pki.ca_cert).items) == 3

    async def both() -> tuple[int, int]:
        async with Client([ep.http_url], ca=stack.pki.ca_cert) as h, \
                Client([ep.grpc_target], transport="grpc", ca=stack.pki.ca_cert) as g:
            a, b = await h.recommend({"user_id": "u1", "k": 2}), await g.recommend(
                {"user_id": "u1", "k": 2})
            return len(a.items), len(b.items)

    assert asyncio.run(both()) == (2, 2)


def test_a_plaintext_client_is_refused(stack: Stack) -> None:
    ep = stack.endpoints[0]
    with pytest.raises((OSError, http.client.HTTPException)):  # connection closed, no answer
        _https_post(f"http://{ep.host}:{ep.http_port}", None)
    with pytest.raises(grpc.RpcError) as err:
        _grpc_recommend(ep.grpc_target, None)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_trusting_another_ca_is_refused(stack: Stack) -> None:
    ep = stack.endpoints[0]
    with pytest.raises(urllib.error.URLError) as url_err:
        _https_post(ep.http_url, stack.other.ca_cert)
    assert isinstance(url_err.value.reason, ssl.SSLCertVerificationError)
    with pytest.raises(grpc.RpcError) as err:
        _grpc_recommend(ep.grpc_target, stack.other.ca_cert)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    async def refused() -> str:
        policy = RetryPolicy(deadline_s=2.0, retries=0)
        async with Client([ep.http_url], ca=stack.other.ca_cert, policy=policy) as client:
            with pytest.raises(ClientError) as exc:
                await client.recommend({"user_id": "u1"})
            return str(exc.value)

    assert "Certificate" in asyncio.run(refused())


def test_load_generator_transports_speak_tls(stack: Stack) -> None:
    ep, ca = stack.endpoints[0], str(stack.pki.ca_cert)
    requests = [RecommendRequest(user_id="u1", k=3)]

    async def one(spec: TransportSpec) -> Status:
        transport = make_transport(spec, requests)
        await transport.open()
        try:
            return (await transport.send(0)).status
        finally:
            await transport.close()

    for spec in (TransportSpec("http", (ep.http_url,), ca=ca),
                 TransportSpec("grpc", (ep.grpc_target,), ca=ca),
                 TransportSpec("client-grpc", (ep.grpc_target,), ca=ca)):
        assert asyncio.run(one(spec)) == Status.OK, spec.kind
    assert asyncio.run(one(TransportSpec("http", (ep.http_url,), ca=str(stack.other.ca_cert)))
                       ) == Status.ERROR
    with pytest.raises(ConfigError, match="not https://"):
        TransportSpec("http", (f"http://{ep.host}:{ep.http_port}",), ca=ca)


# --- the front door ----------------------------------------------------------------------


def _checks(stats_port: int) -> dict[str, tuple[str, str]]:
    """HAProxy's view of each server: name -> (status, last check status)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=2) as r:
        text = r.read().decode().removeprefix("# ")
    return {row["svname"]: (row["status"], row["check_status"])
            for row in csv.DictReader(io.StringIO(text))
            if row["svname"] not in ("FRONTEND", "BACKEND")}


def _door(stack: Stack, workdir: Path, replica_ca: Path, name: str = "localhost") -> FrontDoor:
    cfg = FrontDoorConfig(free_port(), grpc_port=free_port(), stats_port=free_port(),
                          check_interval_ms=100, tls=stack.pki.server_files,
                          replica_ca=replica_ca, replica_server_name=name)
    door = FrontDoor(cfg, workdir)
    door.start(stack.endpoints)
    return door


def test_front_door_serves_tls_and_checks_tls_replicas_up(stack: Stack, tmp_path: Path) -> None:
    door = _door(stack, tmp_path, stack.pki.ca_cert)
    try:
        assert door.http_url.startswith("https://") and door.grpc_target is not None
        assert door.pem_path.stat().st_mode & 0o777 == 0o600
        assert door.cfg.stats_port is not None
        stats_port = door.cfg.stats_port
        # every server passed an HTTP check over verified TLS (they start UP, unchecked)
        wait_until(lambda: set(_checks(stats_port).values()) == {("UP", "L7OK")}, 10.0,
                   what="HAProxy to check every TLS replica")
        assert set(_checks(stats_port)) == {"r0", "r1", "g0", "g1"}
        seen: set[str] = set()  # round robin; a check that flaps on a busy machine skips one
        wait_until(lambda: seen.add(_https_post(door.http_url, stack.pki.ca_cert)["replica"])
                   or seen == {"r0", "r1"}, 10.0, 0.02, what="both replicas through the door")
        assert len(_grpc_recommend(door.grpc_target, stack.pki.ca_cert).items) == 3
        with pytest.raises(urllib.error.URLError):
            _https_post(door.http_url, stack.other.ca_cert)
        with pytest.raises((OSError, http.client.HTTPException)):
            _https_post(door.http_url.replace("https://", "http://"), None)
    finally:
        door.stop()


@pytest.mark.parametrize("wrong", ["ca", "name"])
def test_front_door_refuses_replicas_it_cannot_verify(stack: Stack, tmp_path: Path,
                                                      wrong: str) -> None:
    door = (_door(stack, tmp_path, stack.other.ca_cert) if wrong == "ca"  # another CA signed
            else _door(stack, tmp_path, stack.pki.ca_cert, "elsewhere.example"))  # not its name
    try:
        assert door.cfg.stats_port is not None
        stats_port = door.cfg.stats_port
        wait_until(lambda: {s for s, _ in _checks(stats_port).values()} == {"DOWN"}, 10.0,
                   what=f"HAProxy to mark replicas with the wrong {wrong} down")
        with pytest.raises(urllib.error.HTTPError) as err:
            _https_post(door.http_url, stack.pki.ca_cert)
        assert err.value.code == 503
    finally:
        door.stop()


def test_render_config_tls_lines() -> None:
    cfg = FrontDoorConfig(8000, grpc_port=9000, tls=TLSFiles(Path("/c.pem"), Path("/c.key")),
                          replica_ca=Path("/ca dir/ca.pem"), replica_server_name="localhost")
    eps = [Endpoint("10.0.0.2", 8100, 9100, tls=True), Endpoint("10.0.0.3", 8100, 9100)]
    text = render_config(cfg, eps, pem=Path("/door/frontdoor.pem"))
    assert "    bind 127.0.0.1:8000 ssl crt /door/frontdoor.pem\n" in text
    assert "    bind 127.0.0.1:9000 ssl crt /door/frontdoor.pem alpn h2 proto h2\n" in text
    to_tls = ('ssl verify required ca-file "/ca dir/ca.pem" check-ssl sni str(localhost) '
              "verifyhost localhost check-sni localhost")
    assert f"    server r0 10.0.0.2:8100 check {to_tls}\n" in text
    assert (f"    server g0 10.0.0.2:9100 proto h2 check port 8100 check-proto h1 {to_tls} "
            "alpn h2 check-alpn http/1.1\n") in text
    # a plaintext replica stays plaintext; no CA given: the system's
    assert "    server r1 10.0.0.3:8100 check\n" in text
    plain_ca = render_config(FrontDoorConfig(8000), eps[:1])
    assert "ca-file @system-ca check-ssl\n" in plain_ca and "bind 127.0.0.1:8000\n" in plain_ca
    with pytest.raises(ValueError, match="pem is None"):
        render_config(cfg, eps)


def test_plaintext_is_unchanged() -> None:
    text = render_config(FrontDoorConfig(8000, grpc_port=9000), [Endpoint("h", 1, 2)])
    assert "ssl" not in text
    assert repr(Endpoint("h", 1, 2)) == "Endpoint(host='h', http_port=1, grpc_port=2)"
    assert Endpoint("h", 1, 2).http_url == "http://h:1"


# --- files and settings ------------------------------------------------------------------


def test_a_missing_cert_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(TLSFileError, match=f"TLS certificate {missing} does not exist"):
        server_context(TLSFiles(missing, tmp_path / "k.key"))
    with pytest.raises(TLSFileError, match=f"TLS CA {missing} does not exist"):
        grpc_channel_credentials(missing)
    svc_less = EntryServer(None, AppConfig(), "127.0.0.1", 0, None,  # type: ignore[arg-type]
                           tls=TLSFiles(missing, missing))
    with pytest.raises(TLSFileError, match="nowhere.pem does not exist"):
        svc_less.start()  # before any port is bound


def test_unusable_files_say_what_is_wrong(stack: Stack, tmp_path: Path) -> None:
    pki = stack.pki
    not_pem = tmp_path / "cert.der"
    not_pem.write_bytes(b"\x30\x82binary")
    with pytest.raises(TLSFileError, match="cert.der is not a PEM certificate"):
        server_context(TLSFiles(not_pem, pki.server_key))
    with pytest.raises(TLSFileError, match="server.pem is not a PEM private key"):
        server_context(TLSFiles(pki.server_cert, pki.server_cert))
    encrypted = tmp_path / "enc.key"
    encrypted.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n"
                         "-----END ENCRYPTED PRIVATE KEY-----\n")
    with pytest.raises(TLSFileError, match="enc.key is encrypted"):
        server_context(TLSFiles(pki.server_cert, encrypted))
    with pytest.raises(TLSFileError, match="does not match certificate"):
        server_context(TLSFiles(pki.server_cert, stack.other.server_key))
    with pytest.raises(TLSFileError, match="needs its key"):
        tls_files(pki.server_cert, None)
    pem = cert_and_key_pem(pki.server_files)
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----") and b"PRIVATE KEY" in pem


def test_serve_settings_take_tls_files_in_pairs_with_checked_paths(stack: Stack,
                                                                   tmp_path: Path) -> None:
    base = {"artifact": str(tmp_path), "public_key": str(stack.pki.ca_cert)}
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        ServeSettings(**base, tls_cert=str(stack.pki.server_cert))
    with pytest.raises(ValueError, match="tls_ca is set but"):
        ServeSettings(**base, tls_ca=str(stack.pki.ca_cert))
    (tmp_path / "manifest.json").write_text("{}")
    settings = ServeSettings(**base, tls_cert=str(stack.pki.server_cert),
                             tls_key=str(stack.pki.server_key),
                             tls_ca=str(tmp_path / "missing-ca.pem"))
    with pytest.raises(ValueError, match="tls_ca: .*missing-ca.pem does not exist"):
        resolve_paths(settings)


def test_mutual_tls_asks_for_a_client_certificate_the_ca_signed(stack: Stack) -> None:
    pki = stack.pki
    assert pki.client_cert is not None and pki.client_key is not None
    server = server_context(pki.server_files, client_auth=True)

    def handshake(client: ssl.SSLContext) -> bytes:
        a, b = socket.socketpair()
        with a, b:
            def serve() -> None:
                try:
                    with server.wrap_socket(a, server_side=True) as conn:
                        conn.sendall(b"ok")
                except ssl.SSLError:
                    pass
            t = threading.Thread(target=serve)
            t.start()
            try:
                with client.wrap_socket(b, server_hostname="localhost") as conn:
                    conn.settimeout(5)
                    return conn.recv(2)
            finally:
                t.join(5)

    assert handshake(client_context(pki.ca_cert, cert=pki.client_cert,
                                    key=pki.client_key)) == b"ok"
    with pytest.raises(ssl.SSLError):
        handshake(client_context(pki.ca_cert))  # no client certificate


@pytest.mark.parametrize("module", ["security.tls", "security.testing"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
