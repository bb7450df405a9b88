set(TESSERA_BACKBONE_SOURCES fit.cpp fit.h fit_config.def fit_import.cpp fit_import.h)
