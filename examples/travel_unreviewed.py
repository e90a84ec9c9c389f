"""The travel workflow without its scripted reviewer: escalations wait for a person.

Used by the README's "Debugging a failed run" walkthrough::

    ledgerflow run ledgerflow.examples.travel_unreviewed:wf \\
        --goal '{"destination": "Lisbon", "passengers": 2}'
    # -> waiting on price: ledgerflow resolve RUN price --output @price.json | --retry | --abandon
"""

from __future__ import annotations

from ledgerflow.examples import travel
from ledgerflow.machines import Workflow

__all__ = ["wf"]

wf = Workflow(
    "travel-unreviewed",
    goal=travel.TripGoal,
    budget=travel.wf.budget,
    max_concurrency=travel.wf.max_concurrency,
)
wf.agents.update(travel.wf.agents)
wf.planner(travel.plan_trip)
