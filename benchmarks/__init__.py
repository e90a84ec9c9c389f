"""Side-by-side performance runs of runledger, its peers and raw SQLite (see README.md)."""
