"""The limits' Prometheus lines: budget use per scope and period, backend health, refusals, leases."""

from __future__ import annotations

from typing import Any

from hedgeway.limits.estimate import to_usd


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(lim: Any) -> str:
    """Prometheus text lines for the limits: budget use per scope and period, backend health."""
    out = ["# HELP hedgeway_budget_used_ratio Settled spend / limit per budget (this period).",
           "# TYPE hedgeway_budget_used_ratio gauge"]
    for (scope, period), (spent, limit) in lim.use.items():
        out.append(f'hedgeway_budget_used_ratio{{scope="{_label(scope)}",period="{period}"}} {spent / limit:.6f}')
    out += ["# HELP hedgeway_budget_spent_usd Settled spend per budget (this period).",
            "# TYPE hedgeway_budget_spent_usd gauge"]
    for (scope, period), (spent, _) in lim.use.items():
        out.append(f'hedgeway_budget_spent_usd{{scope="{_label(scope)}",period="{period}"}} {to_usd(spent)}')
    for name, kind, value in (
            ("hedgeway_limits_backend_errors_total", "counter", lim.counts["backend_errors"]),
            ("hedgeway_limits_fail_open_total", "counter", lim.counts["fail_open"]),
            ("hedgeway_limits_fail_closed_total", "counter", lim.counts["fail_closed"]),
            ("hedgeway_limits_settle_failures_total", "counter", lim.counts["settle_failures"]),
            ("hedgeway_limits_backend_up", "gauge", 0 if lim.down else 1),
            ("hedgeway_limits_leases_total", "counter", lim.leases.count if lim.leases is not None else 0),
            ("hedgeway_budget_alerts_total", "counter", lim.alerter.fired),
            ("hedgeway_budget_alert_webhook_failures_total", "counter", lim.alerter.failed)):
        out += [f"# TYPE {name} {kind}", f"{name} {value}"]
    out.append("# TYPE hedgeway_limits_refused_total counter")
    for reason in ("budget", "rate", "deployment"):
        out.append(f'hedgeway_limits_refused_total{{reason="{reason}"}} {lim.counts["refused_" + reason]}')
    return "\n".join(out) + "\n"
