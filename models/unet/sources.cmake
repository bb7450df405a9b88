set(TESSERA_BACKBONE_SOURCES unet.cpp unet.h unet_config.def unet_entry.cpp unet_import.cpp unet_import.h)
