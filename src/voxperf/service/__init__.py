"""voxperf.service: the reference voice service (FastAPI); installed with ``voxperf[serve]``."""

from voxperf.extras import require_extra

require_extra("serve", "the voice service (voxperf serve)")
