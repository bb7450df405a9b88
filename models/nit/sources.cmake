set(TESSERA_BACKBONE_SOURCES nit.cpp nit.h nit_config.def)
