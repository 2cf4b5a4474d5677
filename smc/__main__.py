import sys

from smc.cli import main

sys.exit(main())
