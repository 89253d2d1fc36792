import sys

from epochscope.cli import main

sys.exit(main())
