"""`python -m agent.cli` = the `geoagent` command."""

import sys

from agent.cli import main

sys.exit(main())
