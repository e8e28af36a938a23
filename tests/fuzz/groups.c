/*
 * Groups files (native-modules/htpasswd.c): `group: user user ...` lines, a group named on
 * several lines has the members of all of them.  Checks, besides the sanitizers and the leak
 * checker: a file that parses has distinct, sorted group names with sorted members, and every
 * member listed is a member by h2p_groups_is_member; a refused one says why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/htpasswd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    h2p_groups_t groups;
    char err[256] = "";
    if (h2p_groups_parse(&groups, (const char *)data, size, "fuzz", err, sizeof(err)) != 0) {
        if (err[0] == '\0' || groups.groups != NULL || groups.text != NULL)
            abort();
        return 0;
    }
    for (size_t i = 0; i != groups.count; ++i) {
        const h2p_group_t *g = groups.groups + i;
        if (g->name[0] == '\0' || strchr(g->name, ':') != NULL || strchr(g->name, ' ') != NULL)
            abort();
        if (i != 0 && strcmp(groups.groups[i - 1].name, g->name) >= 0)
            abort();
        for (size_t j = 0; j != g->count; ++j) {
            const char *member = g->members[j];
            if (member[0] == '\0' || strchr(member, ' ') != NULL || strchr(member, '\t') != NULL)
                abort();
            if (j != 0 && strcmp(g->members[j - 1], member) > 0)
                abort();
            if (!h2p_groups_is_member(&groups, g->name, member, strlen(member)))
                abort();
        }
    }
    h2p_groups_dispose(&groups);
    return 0;
}
