"""The analyst's report: one self-contained HTML page, and its Markdown summary.

`html` writes ``report.html``, `markdown` writes ``report.md``.

`figures` draws the charts (matplotlib, Okabe-Ito palette); `influence` renders the B2B
influence section of a persona card.
"""

from pipelines.report.html import write_report
from pipelines.report.markdown import write_markdown

__all__ = ["write_markdown", "write_report"]
