"""The analyst's report: one self-contained HTML page (`html`) and its Markdown summary.

`figures` draws the charts (matplotlib, Okabe-Ito palette); `influence` renders the B2B
influence section of a persona card.
"""

from pipelines.report.html import write_markdown, write_report

__all__ = ["write_markdown", "write_report"]
