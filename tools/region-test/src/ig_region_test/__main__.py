import sys

from ig_region_test.cli import main

sys.exit(main())
