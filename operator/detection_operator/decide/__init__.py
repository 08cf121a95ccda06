"""Pure decision logic: no I/O, no clock (now is passed in), deterministic."""
