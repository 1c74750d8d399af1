"""Pure payments vocabulary shared by every service: money and card-number hygiene. No I/O."""
