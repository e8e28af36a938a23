/* custom_errors' settings: the mode and the error pages, read with the configuration. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"

static void custom_errors_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    m->custom_errors.mode = H2P_ERRORS_DETAILED_LOCAL_ONLY;
    m->custom_errors.pages = NULL;
    m->custom_errors.num_pages = 0;
}

static void parse_error_pages(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_modules_conf_t *m = base;
    size_t count = h2p_cfg_map_size(node);

    if (!h2p_cfg_expect_map(ctx, node))
        return;
    m->custom_errors.pages = h2p_cfg_alloc(ctx->arena, count, sizeof(*m->custom_errors.pages));
    m->custom_errors.num_pages = 0;
    for (size_t i = 0; i < count; i++) {
        h2p_error_page_t *page = &m->custom_errors.pages[m->custom_errors.num_pages];
        yaml_node_t *key_node, *value;
        const char *name = h2p_cfg_map_entry(ctx, node, i, &key_node, &value);
        uint64_t status;
        size_t mark;
        if (name == NULL)
            continue;
        mark = h2p_cfg_path_push_key(ctx, name);
        if (h2p_cfg_number(ctx, key_node, 400, 599, &status) == 0 &&
            (page->path = h2p_cfg_path(ctx, value, H2P_CFG_REGULAR_FILE)) != NULL &&
            (!ctx->check_files ||
             (page->body = h2p_cfg_read_small_file(ctx, value, page->path, H2P_MAX_ERROR_PAGE_SIZE, &page->body_len)) != NULL)) {
            page->status = status;
            m->custom_errors.num_pages++;
        }
        h2p_cfg_path_pop(ctx, mark);
    }
}

static const char *const custom_errors_mode_names[] = {"detailed_local_only", "on", "off", NULL}; /* h2p_custom_errors_mode_t */

static const h2p_cfg_key_t custom_errors_keys[] = {{"enabled", H2P_CFG_BOOL, MOD(custom_errors.enabled)},
                                                   {"mode", H2P_CFG_ENUM, MOD(custom_errors.mode), .arg = custom_errors_mode_names},
                                                   {"pages", H2P_CFG_CUSTOM, 0, .parse = parse_error_pages},
                                                   {NULL}};

const h2p_module_conf_t h2p_conf_custom_errors = {.default_enabled = 1, .init = custom_errors_init, .keys = custom_errors_keys};
