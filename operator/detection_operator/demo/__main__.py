"""`python -m detection_operator.demo`."""

from detection_operator.demo.runner import main

raise SystemExit(main())
