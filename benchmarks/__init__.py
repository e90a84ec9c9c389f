"""Side-by-side performance runs of ledgerflow, its peers and raw SQLite (see README.md)."""
