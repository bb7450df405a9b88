set(TESSERA_BACKBONE_SOURCES dit.cpp dit.h dit_config.def dit_import.cpp dit_import.h dit_presets.cpp)
