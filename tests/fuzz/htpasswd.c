/*
 * Users files (native-modules/htpasswd.c): `user:hash` lines.  Checks, besides the sanitizers
 * and the leak checker: a file that parses has valid, distinct names, sorted, each found by
 * h2p_htpasswd_find, each with a hash h2p_htpasswd_check_hash accepts; a refused one says why.
 * Passwords are not verified here: crypt(3) at a bcrypt cost the file chooses is the admin's
 * choice of slowness, not a parser's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/htpasswd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    h2p_htpasswd_t users;
    char err[256] = "";
    if (h2p_htpasswd_parse(&users, (const char *)data, size, "fuzz", err, sizeof(err)) != 0) {
        if (err[0] == '\0' || users.users != NULL || users.text != NULL)
            abort();
        return 0;
    }
    for (size_t i = 0; i != users.count; ++i) {
        const h2p_htpasswd_user_t *u = users.users + i;
        if (u->name_len == 0 || strlen(u->name) != u->name_len || memchr(u->name, ':', u->name_len) != NULL ||
            h2p_htpasswd_check_hash(u->hash) != NULL)
            abort();
        if (i != 0 && strcmp(users.users[i - 1].name, u->name) >= 0)
            abort();
        if (h2p_htpasswd_find(&users, u->name, u->name_len) != u)
            abort();
        if (h2p_htpasswd_find(&users, u->name, u->name_len - 1) == u)
            abort();
    }
    h2p_htpasswd_dispose(&users);
    return 0;
}
