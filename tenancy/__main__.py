"""`python -m tenancy` is the `comfy-tenancy` command."""

from .cli import main

raise SystemExit(main())
