"""Evaluation: speaker-disjoint splits and protocols (`splits`), WA/UA/macro-F1 with intervals (`metrics`), and the run report (`report`)."""
