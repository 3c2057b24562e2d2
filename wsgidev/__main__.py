from __future__ import annotations

from wsgidev.cli import main

raise SystemExit(main())
