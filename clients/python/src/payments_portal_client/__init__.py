"""Typed client for portal backends: pay commands and their outcomes, and pay status."""

from payments_contracts.money import Money
from payments_contracts.payments import (
    BillingAddress,
    CardOnline,
    GuestCheckout,
    PayerPortal,
    Remittance,
)

from .client import OutcomeTimeout, PayOutcome, PortalClient
from .kafka import KafkaSecurity
from .outcomes import Accepted, Correlator, Ended, Outcome, Rejected, RemittanceDetails
from .read_api import NotFound, ReadModelClient, ReadModelError, Unauthorized, Unavailable

__all__ = [
    "Accepted",
    "BillingAddress",
    "CardOnline",
    "Correlator",
    "Ended",
    "GuestCheckout",
    "KafkaSecurity",
    "Money",
    "NotFound",
    "Outcome",
    "OutcomeTimeout",
    "PayOutcome",
    "PayerPortal",
    "PortalClient",
    "ReadModelClient",
    "ReadModelError",
    "Rejected",
    "Remittance",
    "RemittanceDetails",
    "Unauthorized",
    "Unavailable",
]
