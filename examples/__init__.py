"""Runnable workflows; ``ledgerflow.examples.travel`` is what ``ledgerflow demo`` runs."""

# Nothing is re-exported: each example is a module of its own (import
# ledgerflow.examples.travel), so importing the package builds no workflow.
__all__: list[str] = []
