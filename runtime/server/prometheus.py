"""Counters, gauges and histograms rendered in Prometheus' text exposition format (version 0.0.4).

A few dozen lines instead of a dependency: the server exposes a fixed, small set of metrics.
Each metric keeps one value (or one histogram) per label set; `render` writes
    # HELP vllm:prompt_tokens_total Number of prefill tokens processed.
    # TYPE vllm:prompt_tokens_total counter
    vllm:prompt_tokens_total{model_name="m"} 42.0
Histograms write cumulative `_bucket{le=...}` lines, then `_sum` and `_count`.
"""
from __future__ import annotations

import bisect
import math

Labels = tuple[tuple[str, str], ...]

# Prometheus' text format: the exposition content type scrapers negotiate.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metric:
    kind = "untyped"

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.documentation)}", f"# TYPE {self.name} {self.kind}"]


class Counter(Metric):
    """A value that only goes up. The name carries the `_total` suffix."""

    kind = "counter"

    def __init__(self, name: str, documentation: str) -> None:
        super().__init__(name, documentation)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} can only increase, got {amount}.")
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def set_total(self, labels: Labels, total: float) -> None:
        """Mirror a cumulative total kept elsewhere (e.g. by the engine)."""
        self.values[labels] = float(total)

    def lines(self) -> list[str]:
        return [f"{self.name}{_labels(labels)} {_num(v)}" for labels, v in self.values.items()]


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, labels: Labels, value: float) -> None:
        self.values[labels] = float(value)


class Histogram(Metric):
    """Observations counted into fixed upper-bound buckets, plus their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, documentation: str, buckets: list[float]) -> None:
        super().__init__(name, documentation)
        if list(buckets) != sorted(buckets):
            raise ValueError(f"histogram {name} buckets must be sorted, got {buckets}.")
        self.buckets = [float(b) for b in buckets]
        self.counts: dict[Labels, list[int]] = {}  # per bucket, not cumulative; last = +Inf
        self.sums: dict[Labels, float] = {}

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] = self.sums.get(labels, 0.0) + value

    def lines(self) -> list[str]:
        out = []
        for labels, counts in self.counts.items():
            cumulative = 0
            for bound, count in zip([*self.buckets, math.inf], counts):
                cumulative += count
                le = (("le", "+Inf" if bound == math.inf else _num(bound)),)
                out.append(f"{self.name}_bucket{_labels(labels + le)} {_num(cumulative)}")
            out.append(f"{self.name}_count{_labels(labels)} {_num(cumulative)}")
            out.append(f"{self.name}_sum{_labels(labels)} {_num(self.sums[labels])}")
        return out


def render(metrics: list[Metric]) -> str:
    """All metrics as one exposition document."""
    out = []
    for metric in metrics:
        out += metric.header() + metric.lines()
    return "\n".join(out) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels)
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
