"""invoice-sync's domain: pure models and rules, no I/O."""
