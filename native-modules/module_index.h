/*
 * Each module's index in the pipeline (native-modules/modules.def), for what the front end
 * keeps per module without knowing the modules: H2P_MODULE_INDEX(name), H2P_NUM_MODULES.
 */
#ifndef H2POOL_MODULE_INDEX_H
#define H2POOL_MODULE_INDEX_H

typedef enum h2p_module_index {
#define H2P_MODULE(name, phases, settings) H2P_MODULE_INDEX_##name,
#include "native-modules/modules.def"
#undef H2P_MODULE
    H2P_NUM_MODULES
} h2p_module_index_t;

#define H2P_MODULE_INDEX(name) H2P_MODULE_INDEX_##name

#endif
