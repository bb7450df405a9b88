set(TESSERA_AUTOENCODER_SOURCES ldm_autoencoder.cpp ldm_autoencoder.h ldm_import.cpp)
