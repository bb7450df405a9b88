set(TESSERA_BACKBONE_SOURCES fit.cpp fit.h fit_import.cpp fit_import.h)
