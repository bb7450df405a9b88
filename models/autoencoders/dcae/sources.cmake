set(TESSERA_AUTOENCODER_SOURCES dcae.cpp dcae.h dcae_import.cpp)
