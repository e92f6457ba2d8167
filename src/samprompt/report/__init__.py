"""Run reports: summary tables (``summary.csv`` / ``summary.md``), pictures and the self-contained HTML page."""

from samprompt.report.html import RunView, render_report
from samprompt.report.tables import SUMMARY_COLUMNS, format_summary_md, summarize_rows, summary_csv

__all__ = ["SUMMARY_COLUMNS", "RunView", "format_summary_md", "render_report", "summarize_rows", "summary_csv"]
