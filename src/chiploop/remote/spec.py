"""``chip: {remote: HOST:PORT, token_file: FILE}``: where an experiment's chip is (no torch, no grpc here)."""

from __future__ import annotations

from dataclasses import dataclass

from chiploop.specs import Spec, SpecError, spec_field


def split_address(text: str, field: str = "chip.remote") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); anything else is a SpecError."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SpecError(field, text, "HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:50051")
    return host, int(port)


@dataclass(frozen=True)
class ChipSpec(Spec):
    """A chip served over gRPC (``chiploop serve``, or a vendor's implementation of
    ``proto/chiploop_chip.proto``) that the run's crossbars live on; the rule stays on this host."""

    remote: str = spec_field("127.0.0.1:50051", doc="HOST:PORT of the chip server (default: chiploop serve's)")
    token_file: str = spec_field("chip.token", doc="file holding the chip's token (the one it was served with)")
    tls_ca: str = spec_field("", doc="PEM file of the certificate authority for a TLS chip; empty = plain "
                             "connection (loopback or a trusted network only)")
    timeout_s: float = spec_field(30.0, doc="deadline of one call before it is retried", unit="s",
                                  low=0.0, high=3600.0, low_open=True)
    retries: int = spec_field(3, doc="retries of a call that timed out or found the chip unavailable (each with "
                              "the same sequence number: applied once)", low=0, high=100)

    def check(self) -> None:
        split_address(self.remote, "remote")
        if not self.token_file:
            raise SpecError("token_file", self.token_file, "a file holding the chip's token")
