"""voxperf: how fast is your speech pipeline, really?"""

from __future__ import annotations

__version__ = "0.1.0"
