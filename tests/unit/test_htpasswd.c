/*
 * Unit tests for native-modules/htpasswd.c: users files (crypt(3) hashes), groups files,
 * password checks.  Hashes below were made with `htpasswd -nbB -C 4`, `openssl passwd -6/-5`
 * and python3's crypt module.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "native-modules/htpasswd.h"

#define ALICE "alice:$2y$04$YkqAXp5G1elUfP.EDOJH8.q4w0wOfaMpxTvU./cg5dAAcmehmcneS" /* secret */
#define BOB "bob:$2y$05$ZZe9YycHVCNGgAXGjhaX6exAH5dS1zV4Ip7ag3UVrA0Mc09lJQLYW"     /* pa:ss wörd */
#define CAROL                                                                                                                      \
    "carol:$6$abcdefgh$M/eYsB4rVXAm3ZNc88J.UD9rCKAT6FB1rahiwJCHtEndQNORCub5qhjxn50qbqVVthkM.9HpEwtf0t.iV9uH0/" /* hunter2 */
#define DAVE "dave:$5$saltsalt$z9q92hf6JbktqU/z9d42Vu8uW1UyBKh6JgNV7jXir.9"                                    /* letmein */
#define ERIN                                                                                                                       \
    "erin:$6$rounds=5000$xyz$m/EAasXKOiw7Kn4MJD.ojrYD8gcuglP7NXfztPlCnnqp4yt4FwXQlo5GSPXN.lDaK4yLlzGIkOBDDieJfkvG0/" /* pw */
#define FRANK "frank:$2b$04$abcdefghijklmnopqrstuuyvPXIbu7xe6/CED2DzX8z6Si09MlzlW"                                   /* pw */

static char err[1024];

/* Parses an exact-size heap copy, so AddressSanitizer sees any read past the end. */
static int parse_users(h2p_htpasswd_t *users, const char *text)
{
    size_t len = strlen(text);
    char *copy = calloc(len == 0 ? 1 : len, 1);
    memcpy(copy, text, len);
    err[0] = '\0';
    int ret = h2p_htpasswd_parse(users, copy, len, "users", err, sizeof(err));
    free(copy);
    return ret;
}

static int parse_groups(h2p_groups_t *groups, const char *text)
{
    size_t len = strlen(text);
    char *copy = calloc(len == 0 ? 1 : len, 1);
    memcpy(copy, text, len);
    err[0] = '\0';
    int ret = h2p_groups_parse(groups, copy, len, "groups", err, sizeof(err));
    free(copy);
    return ret;
}

static int verify(h2p_htpasswd_t *users, const char *user, const char *password)
{
    return h2p_htpasswd_verify(users, user, strlen(user), password, strlen(password)) != NULL;
}

static void users_file_with_every_accepted_scheme(void **state)
{
    h2p_htpasswd_t users;
    assert_int_equal(parse_users(&users, "# users\n" CAROL "\r\n\n" ALICE "\n  " BOB "  \n" DAVE "\n" ERIN "\n" FRANK), 0);
    assert_int_equal(users.count, 6);
    assert_string_equal(users.users[0].name, "alice"); /* sorted */
    assert_string_equal(users.users[5].name, "frank");
    assert_non_null(h2p_htpasswd_find(&users, "dave", 4));
    assert_null(h2p_htpasswd_find(&users, "dav", 3));
    assert_null(h2p_htpasswd_find(&users, "daveX", 5));

    assert_true(verify(&users, "alice", "secret"));
    assert_true(verify(&users, "bob", "pa:ss wörd"));
    assert_true(verify(&users, "carol", "hunter2"));
    assert_true(verify(&users, "dave", "letmein"));
    assert_true(verify(&users, "erin", "pw"));
    assert_true(verify(&users, "frank", "pw"));

    assert_false(verify(&users, "alice", "Secret"));
    assert_false(verify(&users, "alice", ""));
    assert_false(verify(&users, "alice", "secret "));
    assert_false(verify(&users, "carol", "hunter"));
    assert_false(verify(&users, "dave", "letmein2"));
    assert_false(verify(&users, "nobody", "secret")); /* someone else's password, unknown user */
    assert_false(verify(&users, "", "secret"));
    assert_false(verify(&users, "ALICE", "secret")); /* names are case sensitive, as in Apache */
    h2p_htpasswd_dispose(&users);
}

static void password_with_nul_or_too_long_is_refused(void **state)
{
    h2p_htpasswd_t users;
    assert_int_equal(parse_users(&users, ALICE), 0);
    assert_null(h2p_htpasswd_verify(&users, "alice", 5, "secret\0x", 8));
    assert_null(h2p_htpasswd_verify(&users, "alice", 5, "secret", 5));
    char *big = malloc(5000);
    memset(big, 'a', 5000);
    assert_null(h2p_htpasswd_verify(&users, "alice", 5, big, 5000));
    free(big);
    h2p_htpasswd_dispose(&users);
}

static void empty_users_file(void **state)
{
    h2p_htpasswd_t users;
    assert_int_equal(parse_users(&users, ""), 0);
    assert_int_equal(users.count, 0);
    assert_false(verify(&users, "alice", "secret"));
    h2p_htpasswd_dispose(&users);
    assert_int_equal(parse_users(&users, "# nobody yet\n\n"), 0);
    assert_int_equal(users.count, 0);
    h2p_htpasswd_dispose(&users);
}

static void refuse(const char *text, const char *expect)
{
    h2p_htpasswd_t users;
    assert_int_equal(parse_users(&users, text), -1);
    if (strstr(err, expect) == NULL)
        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", text, err, expect);
    assert_null(users.users);
}

static void legacy_and_plain_hashes_are_refused(void **state)
{
    refuse("x:abzlUXK5ed5rs\n", "users:1: user \"x\": DES crypt not accepted");
    refuse(ALICE "\nx:$apr1$x$c1lfMpyyDm.graHWYyv3p/\n", "users:2: user \"x\": MD5");
    refuse("x:$1$x$1qCRnuKVJB0gRI72OR7wV1", "MD5");
    refuse("x:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "unsalted SHA-1");
    refuse("x:$2a$04$YkqAXp5G1elUfP.EDOJH8.q4w0wOfaMpxTvU./cg5dAAcmehmcneS", "legacy bcrypt");
    refuse("x:secret", "plain-text");
    refuse("x:", "plain-text");
    refuse("x:$7$CU..../....abc$xyz", "unknown crypt scheme");
    refuse("x:$2y$04$short", "malformed bcrypt");
    refuse("x:$2y$99$YkqAXp5G1elUfP.EDOJH8.q4w0wOfaMpxTvU./cg5dAAcmehmcneS", "malformed bcrypt");
    refuse("x:$2y$03$YkqAXp5G1elUfP.EDOJH8.q4w0wOfaMpxTvU./cg5dAAcmehmcneS", "bcrypt cost");
    refuse("x:$6$abcdefgh$tooshort", "malformed SHA-crypt hash (digest)");
    refuse("x:$6$abcdefghijklmnopq$M/eYsB4rVXAm3ZNc88J.UD9rCKAT6FB1rahiwJCHtEndQNORCub5qhjxn50qbqVVthkM.9HpEwtf0t.iV9uH0/",
           "(salt)");
    refuse("x:$6$rounds=$abc$M/eYsB4rVXAm3ZNc88J.UD9rCKAT6FB1rahiwJCHtEndQNORCub5qhjxn50qbqVVthkM.9HpEwtf0t.iV9uH0/", "rounds");
    refuse("x:$5$saltsalt$z9q92hf6JbktqU/z9d42Vu8uW1UyBKh6JgNV7jXir.9X", "digest");
}

/* A wrong password costs a full hash computation: work factors above the cap are refused. */
static void work_factor_above_the_cap_is_refused(void **state)
{
    h2p_htpasswd_t users;
    assert_int_equal(parse_users(&users, "x:$2b$12$59Sv9m5C/Q7QwjvMromI4.talsZKbTdgPETIwpbSPKaAZhCasORHW\n"
                                         "y:$5$rounds=1000000$saltsalt$qJJxVe/XhntoMmqVAOHIsi4XNluZCP7xDjNces33p30\n"),
                     0);
    h2p_htpasswd_dispose(&users);
    refuse(ALICE "\nx:$2b$13$eBegFHS5ODXLWzO4nhTIV.PMNjp/ukC.5eVJq76lOiH5nammbEn72\n",
           "users:2: user \"x\": bcrypt cost 13 is above the cap of 12");
    refuse("x:$2y$31$eBegFHS5ODXLWzO4nhTIV.PMNjp/ukC.5eVJq76lOiH5nammbEn72\n", "bcrypt cost 31 is above the cap");
    refuse("x:$6$rounds=1000001$saltsalt$A9Ehy8lEnOOklOCpupb4OwRi7NDS/H42113Up.YkaUCmU6D7ledgLn1p8KLH0YgkFwPzBPS6LsBcEOwhhG8SZ1",
           "users:1: user \"x\": SHA-crypt rounds=1000001 is above the cap of 1000000");
    refuse("x:$5$rounds=999999999$saltsalt$qJJxVe/XhntoMmqVAOHIsi4XNluZCP7xDjNces33p30", "rounds=999999999 is above the cap");
}

static void malformed_lines_are_refused(void **state)
{
    refuse("just-a-name\n", "users:1: want user:hash");
    refuse(":$2y$04$YkqAXp5G1elUfP.EDOJH8.q4w0wOfaMpxTvU./cg5dAAcmehmcneS", "bad user name");
    refuse("a\tb:$2y$04$YkqAXp5G1elUfP.EDOJH8.q4w0wOfaMpxTvU./cg5dAAcmehmcneS", "bad user name");
    refuse(ALICE "\n" CAROL "\n" ALICE "\n", "user \"alice\" is listed twice");
    h2p_htpasswd_t users;
    assert_int_equal(h2p_htpasswd_parse(&users, ALICE "\0x", sizeof(ALICE) + 1, "users", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "NUL"));
}

static void the_message_never_shows_the_hash(void **state)
{
    refuse("x:$1$x$1qCRnuKVJB0gRI72OR7wV1", "MD5");
    assert_null(strstr(err, "1qCRnuKVJB0gRI72OR7wV1"));
}

static void load_from_file(void **state)
{
    char path[] = "/tmp/test_htpasswd_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, ALICE "\n", sizeof(ALICE)), sizeof(ALICE));
    close(fd);
    h2p_htpasswd_t users;
    assert_int_equal(h2p_htpasswd_load(&users, path, err, sizeof(err)), 0);
    assert_true(verify(&users, "alice", "secret"));
    h2p_htpasswd_dispose(&users);
    unlink(path);
    assert_int_equal(h2p_htpasswd_load(&users, path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file"));
    assert_non_null(strstr(err, path));
    assert_int_equal(h2p_htpasswd_load(&users, "/tmp", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a regular file"));
}

static void groups_file(void **state)
{
    h2p_groups_t groups;
    assert_int_equal(parse_groups(&groups, "# roles\nadmins: alice bob\n\nstaff:carol\t dave \r\nempty:\nadmins: erin\n"), 0);
    assert_int_equal(groups.count, 3);
    assert_true(h2p_groups_is_member(&groups, "admins", "alice", 5));
    assert_true(h2p_groups_is_member(&groups, "admins", "bob", 3));
    assert_true(h2p_groups_is_member(&groups, "admins", "erin", 4)); /* second line of the same group */
    assert_true(h2p_groups_is_member(&groups, "staff", "carol", 5));
    assert_true(h2p_groups_is_member(&groups, "staff", "dave", 4));
    assert_false(h2p_groups_is_member(&groups, "staff", "alice", 5));
    assert_false(h2p_groups_is_member(&groups, "admins", "ali", 3));
    assert_false(h2p_groups_is_member(&groups, "admins", "alicex", 6));
    assert_false(h2p_groups_is_member(&groups, "empty", "alice", 5));
    assert_false(h2p_groups_is_member(&groups, "nosuch", "alice", 5));
    assert_false(h2p_groups_is_member(&groups, "Admins", "alice", 5));
    h2p_groups_dispose(&groups);

    assert_int_equal(parse_groups(&groups, ""), 0);
    assert_false(h2p_groups_is_member(&groups, "admins", "alice", 5));
    h2p_groups_dispose(&groups);

    assert_int_equal(parse_groups(&groups, "admins alice\n"), -1);
    assert_non_null(strstr(err, "groups:1: want group: user user"));
    assert_int_equal(parse_groups(&groups, "ok: a\n: alice\n"), -1);
    assert_non_null(strstr(err, "groups:2: bad group name"));
    assert_int_equal(parse_groups(&groups, "a b: alice\n"), -1);
    assert_non_null(strstr(err, "bad group name"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(users_file_with_every_accepted_scheme),
        cmocka_unit_test(password_with_nul_or_too_long_is_refused),
        cmocka_unit_test(empty_users_file),
        cmocka_unit_test(legacy_and_plain_hashes_are_refused),
        cmocka_unit_test(work_factor_above_the_cap_is_refused),
        cmocka_unit_test(malformed_lines_are_refused),
        cmocka_unit_test(the_message_never_shows_the_hash),
        cmocka_unit_test(load_from_file),
        cmocka_unit_test(groups_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
