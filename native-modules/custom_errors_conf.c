/* custom_errors' settings: the mode and the error pages, read with the configuration. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/custom_errors.h"

static void custom_errors_init(h2p_cfg_ctx_t *ctx, void *settings)
{
    h2p_custom_errors_conf_t *c = settings;

    c->mode = H2P_ERRORS_DETAILED_LOCAL_ONLY;
    c->pages = NULL;
    c->num_pages = 0;
}

static void parse_error_pages(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_custom_errors_conf_t *c = base;
    size_t count = h2p_cfg_map_size(node);

    if (!h2p_cfg_expect_map(ctx, node))
        return;
    c->pages = h2p_cfg_alloc(ctx->arena, count, sizeof(*c->pages));
    c->num_pages = 0;
    for (size_t i = 0; i < count; i++) {
        h2p_error_page_t *page = &c->pages[c->num_pages];
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
            c->num_pages++;
        }
        h2p_cfg_path_pop(ctx, mark);
    }
}

static const char *const custom_errors_mode_names[] = {"detailed_local_only", "on", "off", NULL}; /* h2p_custom_errors_mode_t */

static const h2p_cfg_key_t custom_errors_keys[] = {
    {"enabled", H2P_CFG_BOOL, SETTING(h2p_custom_errors_conf_t, enabled)},
    {"mode", H2P_CFG_ENUM, SETTING(h2p_custom_errors_conf_t, mode), .arg = custom_errors_mode_names},
    {"pages", H2P_CFG_CUSTOM, 0, .parse = parse_error_pages},
    {NULL}};

const h2p_module_conf_t h2p_conf_custom_errors = {
    .size = sizeof(h2p_custom_errors_conf_t), .default_enabled = 1, .init = custom_errors_init, .keys = custom_errors_keys};
