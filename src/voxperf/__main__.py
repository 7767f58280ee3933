"""``python -m voxperf``."""

from voxperf.cli import main

main()
