"""An eval artifact as text and as a self-contained HTML page.

Owns :func:`results_table` (the plain-text table ``flowai eval run`` prints: one row per test
case, then the summary) and :func:`html_report` (one HTML file with inline CSS and an inline
SVG chart of each test case's pass rate and pass@k; no scripts, fonts or other external
assets, so it opens anywhere and can be attached to a CI run). A replayed thread's divergence
(``metadata.replay``, see :mod:`.replay`) is shown beside its sample.

Must not import the runtime, the native extension or the providers.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any, Final

from .artifact import EvalArtifact, SampleArtifact, TestCaseArtifact

__all__ = ["case_pass_rate", "gate_passed", "html_report", "pass_at_k_chart", "results_table"]

_CHART_ROW: Final = 26
_CHART_LABEL: Final = 180
_CHART_BAR: Final = 420
_COLOURS: Final = ("#2f7d32", "#1f5fa8", "#8a4fbf", "#b5651d", "#0f7f80")


def case_pass_rate(case: TestCaseArtifact) -> float:
    return sum(s.passed for s in case.samples) / len(case.samples) if case.samples else 0.0


def _pass_at_k(case: TestCaseArtifact) -> str:
    return " ".join(f"@{p.k}={p.unbiased_estimate:.2f}" for p in case.pass_at_k) or "-"


def _divergence(sample: SampleArtifact) -> str | None:
    replay = (sample.metadata or {}).get("replay")
    if not isinstance(replay, dict):
        return None
    first = replay.get("divergence")
    if not isinstance(first, dict):
        return "no divergence"
    recorded, new = first.get("recordedType"), first.get("newType")
    return f"diverges at seq {first.get('seq')} ({recorded} -> {new})"


def gate_passed(artifact: EvalArtifact, min_pass_rate: float) -> bool:
    """The CI gate: at least ``min_pass_rate`` of the test cases reached the config's
    ``pass_threshold``."""
    return artifact.summary.total_test_cases > 0 and artifact.summary.pass_rate >= min_pass_rate


def results_table(artifact: EvalArtifact, threshold: float, min_pass_rate: float = 1.0) -> str:
    """The text table: per test case its samples passed, score, pass@k, and a verdict
    (``threshold``: the config's pass threshold a case's score must reach)."""
    rows = [("test case", "passed", "score", "pass@k", "result")]
    for case in artifact.test_cases:
        passed = sum(s.passed for s in case.samples)
        verdict = "PASS" if case.aggregate_score >= threshold else "FAIL"
        notes = [d for d in (_divergence(s) for s in case.samples) if d]
        errors = sorted({str((s.metadata or {}).get("errorKind")) for s in case.samples if s.error})
        if errors:
            verdict += f" ({', '.join(errors)})"
        elif notes:
            verdict += f" ({notes[0]})"
        rows.append(
            (
                case.test_case_id,
                f"{passed}/{len(case.samples)}",
                f"{case.aggregate_score:.2f}",
                _pass_at_k(case),
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        for row in rows
    ]
    lines.insert(1, "-" * (sum(widths) + 8 + len(rows[0][4])))
    summary = artifact.summary
    cost = summary.cost.estimated_cost_usd if summary.cost is not None else 0.0
    usage = summary.total_usage
    lines.append("")
    lines.append(
        f"{'PASS' if gate_passed(artifact, min_pass_rate) else 'FAIL'}: "
        f"{summary.passed}/{summary.total_test_cases} test cases reached score {threshold:.2f} "
        f"(pass rate {summary.pass_rate:.2f}, needed {min_pass_rate:.2f}); "
        f"aggregate {summary.aggregate_score:.2f}; "
        f"{usage.input_tokens} in / {usage.output_tokens} out tokens; ${cost:.4f}"
    )
    return "\n".join(lines)


def pass_at_k_chart(cases: Sequence[TestCaseArtifact]) -> str:
    """An SVG chart, grouped horizontal bars per test case: the pass rate, then each pass@k
    (shared with Studio's Evals page; every bar has ``data-series`` and ``data-value``)."""
    ks = sorted({p.k for case in cases for p in case.pass_at_k})
    series = ["pass rate", *(f"pass@{k}" for k in ks)]
    group = _CHART_ROW * len(series) + 12
    height = group * len(cases) + 40
    width = _CHART_LABEL + _CHART_BAR + 70
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        'aria-label="pass rate and pass@k per test case">'
    ]
    for i, name in enumerate(series):
        x = _CHART_LABEL + i * 90
        parts.append(
            f'<rect x="{x}" y="4" width="12" height="12" fill="{_COLOURS[i % len(_COLOURS)]}"/>'
            f'<text x="{x + 16}" y="14" font-size="12">{html.escape(name)}</text>'
        )
    for row, case in enumerate(cases):
        top = 30 + row * group
        parts.append(
            f'<text x="0" y="{top + group / 2}" font-size="13">'
            f"{html.escape(case.test_case_id[:28])}</text>"
        )
        values = [case_pass_rate(case)]
        by_k = {p.k: p.unbiased_estimate for p in case.pass_at_k}
        values.extend(by_k.get(k) or 0.0 for k in ks)
        for i, value in enumerate(values):
            y = top + i * _CHART_ROW
            length = max(0.0, min(1.0, value)) * _CHART_BAR
            parts.append(
                f'<rect x="{_CHART_LABEL}" y="{y}" width="{_CHART_BAR}" height="{_CHART_ROW - 6}" '
                f'fill="#eee"/><rect x="{_CHART_LABEL}" y="{y}" width="{length:.1f}" '
                f'height="{_CHART_ROW - 6}" fill="{_COLOURS[i % len(_COLOURS)]}" '
                f'data-case="{html.escape(case.test_case_id)}" data-series="{series[i]}" '
                f'data-value="{value:.4f}"/>'
                f'<text x="{_CHART_LABEL + _CHART_BAR + 6}" y="{y + 15}" font-size="12">'
                f"{value:.2f}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _sample_rows(case: TestCaseArtifact) -> str:
    rows = []
    for sample in case.samples:
        scores = ", ".join(
            f"{html.escape(c.scorer_name)} {c.score:.2f}" for c in sample.component_scores
        )
        note = sample.error or _divergence(sample) or ""
        rows.append(
            f"<tr><td>{sample.sample_index}</td>"
            f'<td class="{"ok" if sample.passed else "bad"}">'
            f"{'pass' if sample.passed else 'fail'}</td>"
            f"<td>{sample.aggregate_score:.2f}</td><td>{scores}</td>"
            f"<td>{html.escape(' > '.join(sample.actual_trajectory))}</td>"
            f"<td>{sample.duration_ms} ms</td><td>{html.escape(note)}</td></tr>"
        )
    return "".join(rows)


_STYLE: Final = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:13px}
.ok{color:#2f7d32;font-weight:600}.bad{color:#b00020;font-weight:600}
.cards{display:flex;gap:1rem;margin:1rem 0}.card{border:1px solid #ccc;padding:0.6rem 1rem}
.card b{display:block;font-size:1.4rem}
"""


def html_report(
    artifact: EvalArtifact,
    threshold: float,
    min_pass_rate: float = 1.0,
    *,
    title: str | None = None,
) -> str:
    """One self-contained HTML page: summary cards, the chart, and every sample."""
    summary = artifact.summary
    cost = summary.cost.estimated_cost_usd if summary.cost is not None else 0.0
    gate = gate_passed(artifact, min_pass_rate)
    heading = html.escape(title or f"Eval {artifact.run_id}")
    cards: list[tuple[str, Any]] = [
        ("result", "PASS" if gate else "FAIL"),
        ("pass rate", f"{summary.pass_rate:.2f} (needed {min_pass_rate:.2f})"),
        ("case threshold", f"{threshold:.2f}"),
        ("test cases", f"{summary.passed}/{summary.total_test_cases}"),
        ("aggregate", f"{summary.aggregate_score:.2f}"),
        ("tokens", f"{summary.total_usage.input_tokens}/{summary.total_usage.output_tokens}"),
        ("cost", f"${cost:.4f}"),
    ]
    sections = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{heading}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{heading}</h1>",
        f"<p>mode {html.escape(artifact.mode)} &middot; tenant "
        f"{html.escape(artifact.tenant_id)} &middot; workspace "
        f"{html.escape(artifact.workspace_id)}</p>",
        '<div class="cards">'
        + "".join(
            f'<div class="card">{name}<b>{html.escape(str(v))}</b></div>' for name, v in cards
        )
        + "</div>",
        "<h2>Pass rate and pass@k</h2>",
        pass_at_k_chart(artifact.test_cases),
    ]
    for case in artifact.test_cases:
        sections.append(
            f"<h2>{html.escape(case.test_case_id)}</h2><p>score {case.aggregate_score:.2f}; "
            f"pass@k {html.escape(_pass_at_k(case))}</p><table><tr><th>sample</th><th>result"
            "</th><th>score</th><th>scorers</th><th>trajectory</th><th>time</th><th>note</th>"
            f"</tr>{_sample_rows(case)}</table>"
        )
    sections.append("</body></html>")
    return "\n".join(sections)
