"""`python -m detection_testing.demo`."""

from .runner import main

raise SystemExit(main())
