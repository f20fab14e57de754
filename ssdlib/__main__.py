import sys

from ssdlib.cli import main

sys.exit(main())
