"""Data in: decoding audio (`audio`, `audio_av`), its quality (`quality`), manifests (`schema`), corpus adapters (`datasets`), downloads (`download`) and synthetic corpora (`synth`)."""
