"""Per-utterance features: self-supervised encoders, spectral maps, openSMILE functionals.

Every extractor follows `serkit.features.base.Extractor`; `build_extractor` makes one from a
plain configuration dict such as ``{"kind": "ssl", "model": "facebook/wav2vec2-large-xlsr-53"}``.
"""

from serkit.features.base import EXTRACTORS, Extractor, build_extractor

__all__ = ["EXTRACTORS", "Extractor", "build_extractor"]
