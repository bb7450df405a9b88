set(TESSERA_BACKBONE_SOURCES dit.cpp dit.h dit_import.cpp dit_import.h dit_presets.cpp)
