"""Runnable workflows; ``ledgerflow.examples.travel`` is what ``ledgerflow demo`` runs."""

if not __name__.startswith("ledgerflow."):
    # Imported by its folder name (a script run from the repo root): a second
    # copy of the classes would record module paths, not ledgerflow's names.
    raise ImportError(f"Import ledgerflow.{__name__}, not {__name__}: the folder "
                      f"{__name__}/ installs as ledgerflow.{__name__}.")

# Nothing is re-exported: each example is a module of its own (import
# ledgerflow.examples.travel), so importing the package builds no workflow.
__all__: list[str] = []
