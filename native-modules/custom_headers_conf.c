/* custom_headers' settings: names and values checked as HTTP allows them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/custom_headers.h"

static void custom_headers_init(h2p_cfg_ctx_t *ctx, void *settings)
{
    h2p_custom_headers_conf_t *c = settings;

    c->headers = NULL;
    c->count = 0;
}

/* name: value (null = remove the header); `enabled` switches the module like everywhere else */
static void parse_custom_headers(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *settings)
{
    h2p_custom_headers_conf_t *c = settings;
    size_t count = h2p_cfg_map_size(node);

    if (!h2p_cfg_expect_map(ctx, node))
        return;
    c->headers = h2p_cfg_alloc(ctx->arena, count, sizeof(*c->headers));
    for (size_t i = 0; i < count; i++) {
        h2p_header_setting_t *header = &c->headers[c->count];
        yaml_node_t *key_node, *value_node;
        const char *name = h2p_cfg_map_entry(ctx, node, i, &key_node, &value_node), *value;
        size_t mark;
        if (name == NULL)
            continue;
        mark = h2p_cfg_path_push_key(ctx, name);
        if (strcmp(name, "enabled") == 0) {
            h2p_cfg_bool(ctx, value_node, &c->enabled);
        } else if (!h2p_cfg_valid_token(name)) {
            h2p_cfg_error(ctx, key_node, "bad header name \"%s\"", name);
        } else if (h2p_cfg_is_null(value_node)) {
            header->name = h2p_cfg_strdup(ctx->arena, name);
            header->value = NULL;
            c->count++;
        } else if ((value = h2p_cfg_scalar(ctx, value_node)) != NULL) {
            if (strpbrk(value, "\r\n") != NULL) {
                h2p_cfg_error(ctx, value_node, "bad header value: no line breaks");
            } else {
                header->name = h2p_cfg_strdup(ctx->arena, name);
                header->value = h2p_cfg_strdup(ctx->arena, value);
                c->count++;
            }
        }
        if (header->name != NULL)
            for (char *c = header->name; *c != '\0'; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c += 'a' - 'A';
        h2p_cfg_path_pop(ctx, mark);
    }
}

const h2p_module_conf_t h2p_conf_custom_headers = {
    .size = sizeof(h2p_custom_headers_conf_t), .default_enabled = 1, .init = custom_headers_init, .parse = parse_custom_headers};
