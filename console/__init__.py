"""The local web console and the one-file run page (extra ``ledgerflow[ui]`` for the server).

``ledgerflow view RUN --out run.html`` writes the run page as one
self-contained file with no extra installed; ``ledgerflow ui`` serves the
console (Starlette + uvicorn) from the same assets.
"""

from ledgerflow.console.page import render_console, render_run_page
from ledgerflow.console.page_data import page_document
from ledgerflow.console.redaction import redact, redact_run_document

__all__ = ["page_document", "redact", "redact_run_document", "render_console", "render_run_page"]
