"""What `check_plugin` reports: one `CheckResult` per check, the `CheckReport`, and `PluginCheckError`.

Heavy tier by placement; this module itself needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gankit.errors import GankitError
from gankit.plugin_api import NetSpec

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class CheckResult:
    """One named check: status is "pass", "fail" or "skip", detail says what was seen."""

    name: str
    status: str
    detail: str = ""


@dataclass
class CheckReport:
    """Everything `check_plugin` checked, with the losses of the training steps it ran."""

    plugin: str
    spec: NetSpec
    results: list[CheckResult] = field(default_factory=list)
    losses: list[dict[str, float]] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line per check, e.g. ``[pass] generator output: [20, 1, 28, 28] float32 ...``."""
        lines = [f"plugin {self.plugin!r} (arch {self.spec.arch}, classes {list(self.spec.classes)}):"]
        for r in self.results:
            lines.append(f"  [{r.status}] {r.name}" + (f": {r.detail}" if r.detail else ""))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class PluginCheckError(GankitError):
    """A plugin failed one or more conformance checks; ``.report`` holds the full CheckReport."""

    def __init__(self, report: CheckReport):
        self.report = report
        failed = report.failures
        lines = [f"plugin {report.plugin!r} failed {len(failed)} of {len(report.results)} checks "
                 f"(arch {report.spec.arch}, classes {list(report.spec.classes)}):"]
        lines += [f"  - {r.name}: {r.detail}" for r in failed]
        skipped = [r.name for r in report.results if r.status == SKIP]
        if skipped:
            lines.append(f"  (not run because of the above: {', '.join(skipped)})")
        super().__init__("\n".join(lines))


