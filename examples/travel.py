"""The article's travel-planning team, with scripted agents that misbehave on cue.

A planner decomposes the goal into flight search, hotel search, pricing and
booking. The agents are deterministic scripts (no network, no API keys) that
act out the failure stories of "The Orchestrator Trap":

- flight search stalls on its first attempt: it times out and is retried;
- hotel search answers with prose where a number belongs on its first
  attempt: the output fails validation, never reaches pricing, and is retried;
- pricing reports low confidence: it is escalated and settled by the scripted
  reviewer registered with ``@wf.on_escalation``;
- booking is a side effect: idempotent, keyed by ``ctx.idempotency_key``, and
  done exactly once.

Run it with ``ledgerflow demo`` or::

    run = await Orchestrator(store).start(wf, TripGoal(destination="Lisbon", passengers=2))
"""

from __future__ import annotations

import asyncio
from datetime import date

from pydantic import BaseModel, Field

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import (
    AgentContext,
    Budget,
    EscalationRequest,
    Resolution,
    RetryPolicy,
    Workflow,
)

__all__ = ["BOOKINGS", "TripGoal", "plan_trip", "wf"]


# -- contracts ---------------------------------------------------------------


class TripGoal(BaseModel):
    destination: str
    passengers: int = Field(ge=1, le=9)
    origin: str = "London"
    depart: date = date(2026, 12, 18)
    nights: int = Field(default=4, ge=1)


class FlightSearchInput(BaseModel):
    origin: str
    destination: str
    depart: date
    passengers: int


class FlightOption(BaseModel):
    carrier: str
    fare: float = Field(gt=0, description="per passenger, EUR")


class FlightSearchOutput(BaseModel):
    flights: list[FlightOption] = Field(min_length=1)


class HotelSearchInput(BaseModel):
    destination: str
    nights: int
    guests: int


class HotelOption(BaseModel):
    name: str
    nightly_rate: float = Field(gt=0, description="per room, EUR")


class HotelSearchOutput(BaseModel):
    hotels: list[HotelOption] = Field(min_length=1)


class PricingInput(BaseModel):
    destination: str
    passenger_count: int
    fare: float
    nightly_rate: float
    nights: int


class LineItem(BaseModel):
    label: str
    amount: float


class PricingOutput(BaseModel):
    total: float = Field(gt=0)
    currency: str = "EUR"
    line_items: list[LineItem]
    confidence: float = Field(ge=0, le=1)
    warnings: list[str] = []


class BookingInput(BaseModel):
    destination: str
    passengers: int
    amount: float
    currency: str


class BookingOutput(BaseModel):
    reference: str
    amount_charged: float


# -- the workflow ------------------------------------------------------------

wf = Workflow("travel", goal=TripGoal, budget=Budget(max_retries=10), max_concurrency=4)

#: The fake booking system: idempotency key -> booking reference. A second
#: call with the same key returns the first booking instead of booking again.
BOOKINGS: dict[str, str] = {}
#: Every call that actually created a booking, to show it happened once.
BOOKING_CALLS: list[str] = []


@wf.planner
async def plan_trip(goal: TripGoal, ctx: AgentContext) -> Plan:
    """Decompose the trip into four tasks with explicit context contracts."""
    return Plan(tasks=[
        Task(id="flights", agent="flight_search", inputs={
            "origin": "$goal.origin", "destination": "$goal.destination",
            "depart": "$goal.depart", "passengers": "$goal.passengers"}),
        Task(id="hotels", agent="hotel_search", inputs={
            "destination": "$goal.destination", "nights": "$goal.nights",
            "guests": "$goal.passengers"}),
        Task(id="price", agent="pricing", needs=["flights", "hotels"], inputs={
            "destination": "$goal.destination", "passenger_count": "$goal.passengers",
            "fare": "$flights.flights.0.fare", "nightly_rate": "$hotels.hotels.0.nightly_rate",
            "nights": "$goal.nights"}),
        Task(id="book", agent="booking", needs=["price"], inputs={
            "destination": "$goal.destination", "passengers": "$goal.passengers",
            "amount": "$price.total", "currency": "$price.currency"}),
    ])


@wf.agent(input=FlightSearchInput, output=FlightSearchOutput, timeout_s=0.25,
          retry=RetryPolicy(max_attempts=3, backoff_s=0.02))
async def flight_search(inp: FlightSearchInput, ctx: AgentContext) -> FlightSearchOutput:
    """Stalls on its first attempt (the upstream API hangs); answers on the next."""
    if ctx.attempt == 1:
        await asyncio.sleep(30)
    ctx.record_usage(tokens=420, cost=0.002)
    return FlightSearchOutput(flights=[
        FlightOption(carrier="TP", fare=182.0), FlightOption(carrier="BA", fare=215.0)])


@wf.agent(input=HotelSearchInput, output=HotelSearchOutput,
          retry=RetryPolicy(max_attempts=3, backoff_s=0.02))
async def hotel_search(inp: HotelSearchInput, ctx: AgentContext) -> object:
    """Hallucinates prose where a number belongs on its first attempt."""
    ctx.record_usage(tokens=380, cost=0.002)
    if ctx.attempt == 1:
        return {"hotels": [{"name": "Casa do Rio", "nightly_rate": "about 120 a night"}]}
    return HotelSearchOutput(hotels=[HotelOption(name="Casa do Rio", nightly_rate=118.0)])


@wf.agent(input=PricingInput, output=PricingOutput, min_confidence=0.7,
          retry=RetryPolicy(max_attempts=2, backoff_s=0.02))
async def pricing(inp: PricingInput, ctx: AgentContext) -> PricingOutput:
    """Prices correctly, but is unsure of the seasonal hotel rate."""
    ctx.record_usage(tokens=650, cost=0.004)
    flights = round(inp.fare * inp.passenger_count, 2)
    rooms = (inp.passenger_count + 1) // 2
    hotel = round(inp.nightly_rate * inp.nights * rooms, 2)
    return PricingOutput(
        total=round(flights + hotel, 2),
        line_items=[LineItem(label="flights", amount=flights),
                    LineItem(label="hotel", amount=hotel)],
        confidence=0.55,
        warnings=["December rates may include a festive surcharge."],
    )


@wf.agent(input=BookingInput, output=BookingOutput, side_effect=True, idempotent=True)
async def booking(inp: BookingInput, ctx: AgentContext) -> BookingOutput:
    """Books the trip once per idempotency key, whatever happens around it."""
    reference = BOOKINGS.get(ctx.idempotency_key)
    if reference is None:
        reference = f"TRV-{len(BOOKINGS) + 1:04d}"
        BOOKINGS[ctx.idempotency_key] = reference
        BOOKING_CALLS.append(ctx.idempotency_key)
    return BookingOutput(reference=reference, amount_charged=inp.amount)


@wf.on_escalation
async def reviewer(request: EscalationRequest) -> Resolution | None:
    """A stricter rule: accept a low-confidence price whose line items add up."""
    if request.kind != "low_confidence" or not isinstance(request.candidate, dict):
        return None
    candidate = PricingOutput.model_validate(request.candidate)
    if abs(sum(item.amount for item in candidate.line_items) - candidate.total) < 0.01:
        return Resolution.accept(
            candidate, note="line items add up to the total; the surcharge warning is noted")
    return None
