"""The local web console and the one-file run page (extra ``ledgerflow[ui]`` for the server).

``ledgerflow view RUN --out run.html`` writes the run page as one
self-contained file with no extra installed; ``ledgerflow ui`` serves the
console (Starlette + uvicorn) from the same assets.
"""
