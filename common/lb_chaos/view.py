"""lb-chaos on screen: the live view while it runs, the summary when it ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from common.bench.lb_report import bar
from common.lb_chaos.observe import WINDOW, Recorder
from common.lb_chaos.timeline import BACKENDS, Timeline, phases

# "ejected" was plain passive health's verdict; the circuit breaker says open or half-open.
STATE_STYLE = {"healthy": "green", "unhealthy": "red", "ejected": "yellow", "open": "yellow",
               "half-open": "cyan"}  # fmt: skip


def live(recorder: Recorder, timeline: Timeline, phase: str) -> RenderableType:
    t = recorder.now()
    ok, failed = recorder.totals()
    share = recorder.share()
    answered = sum(share.values()) or 1
    table = Table(box=box.SIMPLE_HEAD, title_justify="left")
    table.title = (
        f"lb-chaos  t = {t:4.1f} s of {timeline.end:g}  ·  phase: {phase}  ·"
        f"  sent {sum(ok.values()) + sum(failed.values()):,}  failed {sum(failed.values()):,}"
    )
    for name, justify in (("backend", "left"), ("gateway says", "left"), ("share", "right")):
        # the type ignore below: rich's justify is a Literal; these are its values
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column(f"last {WINDOW:g} s", no_wrap=True)
    table.add_column("answered", justify="right")
    table.add_column("failed", justify="right")
    for name in BACKENDS:
        state = recorder.states.get(name, "?")
        fraction = share[name] / answered
        table.add_row(
            f"users/{name}",
            Text(state, style=STATE_STYLE.get(state, "dim")),
            f"{fraction:.0%}",
            bar(fraction, 1 / 3, 16),
            f"{ok[name]:,}",
            f"{failed[name]:,}" if failed[name] else "",
        )
    table.add_row("gateway", "", "", "", "", f"{failed['-']:,}" if failed["-"] else "")
    log = Text("\n".join(f"{at:5.1f} s  {text}" for at, text in recorder.events[-7:]), "dim")
    return Group(table, log)


@dataclass
class Summary:
    rows: list[dict[str, Any]] = field(default_factory=list)
    # backend -> {"kind": kill/slow/flaky, "eject": seconds or None, "recover": ...}
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0
    pids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every failing backend was taken out and came back, without anyone's help."""
        return all(
            f["recover"] is not None and (f["eject"] is not None or f["kind"] == "slow")
            for f in self.faults.values()
        )

    def as_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "faults": self.faults, "sent": self.sent,
                "failed": self.failed, "pids": self.pids, "ok": self.ok}  # fmt: skip


def summarize(recorder: Recorder, timeline: Timeline, pids: list[int]) -> Summary:
    summary = Summary(pids=pids)
    heal = next((s.at for s in timeline.steps if s.action == "heal"), None)
    for step in timeline.steps:
        if step.action == "heal":
            continue
        name = step.backend
        eject = recorder.first_state(name, step.at, healthy=False)
        recover = None
        if heal is not None:
            healthy = healthy_at_or_after(recorder, name, heal)
            answer = recorder.first_answer(name, heal)
            if healthy is not None and answer is not None:
                recover = max(healthy, answer) - heal
        summary.faults[name] = {
            "kind": step.action,
            "eject": None if eject is None else eject - step.at,
            "recover": recover,
        }
    for name, start, end in phases(timeline):
        inside = [ok for t, _, ok in recorder.requests if start <= t < end]
        row: dict[str, Any] = {"phase": name, "from": start, "to": end, "sent": len(inside),
                               "failed": inside.count(False)}  # fmt: skip
        at = next((s for s in timeline.steps if s.label == name), None)
        if at is not None and at.backend in summary.faults:
            row.update(summary.faults[at.backend], backend=at.backend)
            before = share_of(recorder, at.backend, start - (end - start), start)
            row["share"] = (before, share_of(recorder, at.backend, start, end))
        summary.rows.append(row)
    summary.sent = len(recorder.requests)
    summary.failed = sum(not ok for _, _, ok in recorder.requests)
    return summary


def healthy_at_or_after(recorder: Recorder, name: str, t: float) -> float | None:
    """When the gateway (again) considered `name` healthy, from time `t` on."""
    state = None
    for at, new in recorder.transitions.get(name, []):
        if at <= t:
            state = new
        elif new == "healthy":
            return t if state == "healthy" else at
    return t if state == "healthy" else None


def share_of(recorder: Recorder, name: str, start: float, end: float) -> float:
    answered = [who for t, who, ok in recorder.requests if start <= t < end and ok]
    return answered.count(name) / len(answered) if answered else 0.0


def summary_table(summary: Summary) -> Table:
    table = Table(title="lb-chaos summary", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("phase", "from", "sent", "failed", "time to eject", "time to recover", "share"):
        table.add_column(name, justify="left" if name == "phase" else "right")
    for row in summary.rows:
        eject = row.get("eject")
        recover = row.get("recover")
        share = row.get("share")
        table.add_row(
            row["phase"],
            f"{row['from']:.1f} s",
            f"{row['sent']:,}",
            f"{row['failed']:,}",
            "" if "kind" not in row else "not ejected" if eject is None else f"{eject:.2f} s",
            "" if "kind" not in row else "never" if recover is None else f"{recover:.2f} s",
            "" if share is None else f"{share[0]:.0%} → {share[1]:.0%}",
        )
    table.add_section()
    table.add_row("total", "", f"{summary.sent:,}", f"{summary.failed:,}", "", "", "")
    return table


NOTES = (
    "time to eject: from the fault to the gateway's first non-healthy verdict on that backend"
    " (its upstream view). time to recover: from the heal to the backend being healthy again"
    " and answering through the gateway. share: the backend's share of the answers in the"
    " phase before vs during its fault. A slow backend is not ejected: it still answers;"
    " the strategy (P2C) sends it less."
)
