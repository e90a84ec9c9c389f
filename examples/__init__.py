"""Runnable workflows; ``ledgerflow.examples.travel`` is what ``ledgerflow demo`` runs."""
