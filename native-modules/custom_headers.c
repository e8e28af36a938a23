/* custom_headers: not implemented yet (its slot in the pipeline is fixed). */
#include "native-modules/module.h"

const h2p_module_t h2p_module_custom_headers = {"custom_headers", H2P_PHASE_RESPONSE, NULL};
