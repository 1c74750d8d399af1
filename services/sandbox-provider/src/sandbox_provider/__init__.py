"""A local hosted-payments provider for tests and demos.

It registers invoices, opens checkout sessions and payer-portal links, lets a test or
a person complete, fail or abandon a checkout, and sends Standard Webhooks-signed
callbacks with retries. Faults (slow, 5xx, refusal) and webhook duplication and
reordering can be switched on to exercise our side. State is in memory: it is a
stand-in for an external system, not part of ours.
"""
