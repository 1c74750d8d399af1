"""Event contracts: the envelope and every message type, per topic."""

from .envelope import Envelope, Payload, utc_now
from .erp import ErpInvoiceMessage
from .invoices import InvoiceEvent
from .payments import PaymentCommand, PaymentEvent, ProviderCallback

__all__ = [
    "Envelope",
    "ErpInvoiceMessage",
    "InvoiceEvent",
    "Payload",
    "PaymentCommand",
    "PaymentEvent",
    "ProviderCallback",
    "utc_now",
]
