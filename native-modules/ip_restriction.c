/*
 * IIS IP address restrictions (nginx's allow/deny): a client whose address is in `deny` gets
 * 403.6; else one in `allow` passes; else `default` decides.
 *
 * The client is the peer of the connection (an IPv4 client of a dual-stack `*` listener shows
 * up as ::ffff:a.b.c.d and is matched as a.b.c.d).  X-Forwarded-For is believed only from a
 * peer in trusted_proxies: then the right-most address in it that is no trusted proxy is the
 * client, since everything to the left of that was written by the client itself.
 */
#include <string.h>

#include "native-modules/match.h"
#include "native-modules/module.h"
#include "native-modules/ip_restriction.h"

enum { IP_DENIED = 6 }; /* IIS 403.6 */

typedef struct ip_restriction_handler {
    h2o_handler_t super;
    const h2p_ip_restriction_conf_t *conf;
} ip_restriction_handler_t;

/* The client behind trusted proxies; `ip` (the peer) is replaced when the headers name another. */
static void find_forwarded_client(const h2p_ip_restriction_conf_t *conf, h2o_req_t *req, h2p_ip_t *ip)
{
    /* several X-Forwarded-For headers are one list in order: walk them from the last */
    for (size_t i = req->headers.size; i-- != 0;) {
        const h2o_header_t *header = req->headers.entries + i;
        if (header->name != &H2O_TOKEN_X_FORWARDED_FOR->buf)
            continue;
        if (h2p_forwarded_for_client(header->value.base, header->value.len, conf->trusted_proxies, conf->num_trusted_proxies, ip) !=
            0)
            return; /* found the client, or an element that is no address: the last trusted hop stays */
    }
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    ip_restriction_handler_t *self = (void *)_self;
    const h2p_ip_restriction_conf_t *conf = self->conf;
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    h2p_ip_t ip;
    int allowed;

    if (len == 0 || h2p_ip_from_sockaddr((struct sockaddr *)&ss, len, &ip) != 0) {
        allowed = conf->default_allow; /* no IP peer (a UNIX socket): only the default applies */
    } else {
        if (conf->num_trusted_proxies != 0 && h2p_cidr_list_contains(conf->trusted_proxies, conf->num_trusted_proxies, &ip))
            find_forwarded_client(conf, req, &ip);
        if (h2p_cidr_list_contains(conf->deny, conf->num_deny, &ip))
            allowed = 0;
        else if (h2p_cidr_list_contains(conf->allow, conf->num_allow, &ip))
            allowed = 1;
        else
            allowed = conf->default_allow;
    }
    if (allowed)
        return -1;
    h2p_request_t *r = h2p_request_of(req);
    if (r == NULL) {
        h2o_send_error_403(req, "Forbidden", "forbidden", H2O_SEND_ERROR_KEEP_HEADERS);
        return 0;
    }
    return h2p_request_deny(r, "ip_restriction", 403, IP_DENIED, "Forbidden", "forbidden");
}

static int on_config(h2p_module_scope_t *ms)
{
    const h2p_ip_restriction_conf_t *conf = ms->settings->ip_restriction;
    /* allow-all with no rules is the same as no module: it costs nothing */
    if (!ms->settings->ip_restriction->enabled || (conf->default_allow && conf->num_deny == 0))
        return 0;
    ip_restriction_handler_t *self = (void *)h2o_create_handler(ms->pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->conf = conf;
    return 0;
}

const h2p_module_t h2p_module_ip_restriction = {"ip_restriction", H2P_PHASE_REQUEST, on_config};
