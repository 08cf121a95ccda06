"""The closed-loop router sends only to this machine: loopback, or a Pod network's private addresses."""

from __future__ import annotations

import pytest
from kubernetes import client

from detection_testing.router import Router, on_this_machine


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://10.244.0.7:8080", True),  # a Pod IP on the node's bridge
        ("http://[::1]:8080", True),
        ("http://192.168.1.4:8080", True),
        ("http://8.8.8.8:80", False),
        ("https://10.244.0.7:8080", False),  # plain HTTP only: the model servers speak nothing else
        ("http://example.com:80", False),  # a name could resolve anywhere
        ("not a url", False),
    ],
)
def test_only_loopback_or_private_addresses_are_on_this_machine(url: str, local: bool) -> None:
    assert on_this_machine(url) is local


def test_a_fixed_map_is_checked_at_once_and_resolves_each_model() -> None:
    api = client.ApiClient()
    with pytest.raises(ValueError, match="only sends to this machine"):
        Router(api, "ns", "r-model-route", {"m": "http://8.8.8.8:80"})
    router = Router(api, "ns", "r-model-route", {"m": "http://127.0.0.1:9"})
    try:
        assert router.resolve("m") == ["http://127.0.0.1:9"]
        assert router.resolve("other") == []  # no upstream: the request goes on along the fallbacks
    finally:
        router.stop()
