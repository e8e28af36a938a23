/* redirect: not implemented yet (its slot in the pipeline is fixed). */
#include "native-modules/module.h"

const h2p_module_t h2p_module_redirect = {"redirect", H2P_PHASE_REQUEST, NULL};
