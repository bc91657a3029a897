"""serkit: speech emotion recognition on self-supervised speech representations.

The top-level namespace stays small and cheap to import; everything else lives in its
sub-module (`serkit.audio`, `serkit.datasets`, `serkit.schema`, ...).
"""

__version__ = "0.1.0"

from serkit.audio import PAPER_SPEC, AudioError, AudioSpec  # noqa: E402
from serkit.schema import ManifestError, read_manifest  # noqa: E402

__all__ = ["PAPER_SPEC", "AudioError", "AudioSpec", "ManifestError", "__version__", "read_manifest"]
