"""A small travel domain, as in the article, shared by the contracts tests.

Not a conftest: ``from conftest import ...`` would collide with other packages'
conftest modules once the whole suite runs in one process.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ledgerflow.contracts import AgentContract


class DateRange(BaseModel):
    start: str
    end: str


class TripGoal(BaseModel):
    destination: str
    passengers: int
    dates: DateRange | None = None
    budget: float | None = None


class Cabin(enum.StrEnum):
    ECONOMY = "economy"
    BUSINESS = "business"


class FlightSearchInput(BaseModel):
    destination: str
    dates: DateRange
    cabin: Cabin = Cabin.ECONOMY


class FlightOption(BaseModel):
    carrier: str
    price: float
    stops: int


class FlightSearchOutput(BaseModel):
    flights: list[FlightOption]
    cheapest: FlightOption | None = None
    fallback_triggered: bool = False


class LineItem(BaseModel):
    label: str
    amount: float


class PricingInput(BaseModel):
    destination: str
    passenger_count: int = Field(gt=0)
    fares: list[float] = []
    currency: Literal["EUR", "USD"] = "EUR"


class PricingOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    total: float
    currency: str
    confidence: float
    items: list[LineItem] = []


class BookingInput(BaseModel):
    amount: float
    destination: str
    note: str = ""


class BookingOutput(BaseModel):
    confirmation: str


AGENTS = {
    "flights": AgentContract("flights", FlightSearchInput, FlightSearchOutput),
    "pricing": AgentContract("pricing", PricingInput, PricingOutput),
    "book": AgentContract("book", BookingInput, BookingOutput),
}
