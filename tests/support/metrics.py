"""Scrapes as Prometheus reads them: the text parsed by prometheus_client's own parser."""

from __future__ import annotations

import urllib.request

import httpx
from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def parse(text: str) -> Samples:
    """Every sample of the scrape by (name, sorted labels); the parser refuses bad text."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: httpx.Client) -> Samples:
    """GET /metrics on the API's port, with a key that is not valid: none is asked for."""
    response = client.get("/metrics", headers={"Authorization": "Bearer not-a-key"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def scrape_port(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return parse(response.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for one not shown (a series not created yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def change(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a sample grew between two scrapes (the event metrics are per process, so
    tests compare before and after rather than absolute values)."""
    return value(after, name, **labels) - value(before, name, **labels)
