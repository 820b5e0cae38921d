"""Services: the units that process messages (Snorky's module layout)."""
