"""Runnable workflows; ``examples.travel`` is what ``runledger demo`` runs."""
