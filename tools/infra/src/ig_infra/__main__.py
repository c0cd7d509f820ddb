import sys

from ig_infra.cli import main

sys.exit(main())
