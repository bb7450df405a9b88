# SiT shares DiT's network: models/dit/dit_presets.cpp registers both names.
set(TESSERA_BACKBONE_SOURCES)
