"""`python -m detection_operator` is the same as the `detection-operator` command."""

from .cli import main

raise SystemExit(main())
