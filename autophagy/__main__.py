import sys

from autophagy.cli import main

sys.exit(main())
