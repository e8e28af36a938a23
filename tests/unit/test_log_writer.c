/*
 * Unit tests for frontend/log_writer.c: what is handed to the writer is written whole and in
 * order, from many threads at once; when the writer cannot keep up, memory stays bounded and
 * what is dropped is counted, never waited for.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <glob.h>
#include <cmocka.h>
#include "frontend/log_writer.h"

static char dir[64];

static int make_target(void)
{
    snprintf(dir, sizeof(dir), "/tmp/h2pool-log-writer-XXXXXX");
    assert_non_null(mkdtemp(dir));
    h2p_log_target_conf_t conf = {.dir = dir, .kind = H2P_LOG_FILE_W3C, .rotate = H2P_ROTATE_NONE};
    int id = h2p_log_writer_target(&conf);
    assert_true(id >= 0);
    return id;
}

/* The lines of u_extend1.log that are not header lines; checks each is one of ours, whole. */
static size_t count_lines(size_t line_len)
{
    char path[128], *line = NULL;
    size_t cap = 0, count = 0;
    snprintf(path, sizeof(path), "%s/u_extend1.log", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[0] == '#')
            continue;
        assert_int_equal(n, line_len);
        assert_memory_equal(line, "line ", 5);
        ++count;
    }
    free(line);
    fclose(f);
    unlink(path);
    rmdir(dir);
    return count;
}

static void format_line(char *buf, size_t len, unsigned thread, unsigned i)
{
    memset(buf, 'x', len);
    int n = snprintf(buf, len, "line %u %u ", thread, i);
    buf[n] = 'x';
    buf[len - 1] = '\n';
}

typedef struct appender {
    int target;
    unsigned thread, count;
} appender_t;

#define LINE_LEN 100

static void *append_lines(void *arg)
{
    appender_t *a = arg;
    char buf[LINE_LEN];
    for (unsigned i = 0; i != a->count; ++i) {
        format_line(buf, sizeof(buf), a->thread, i);
        assert_int_equal(h2p_log_writer_append(a->target, time(NULL), buf, sizeof(buf)), 0);
    }
    return NULL;
}

static void lines_from_many_threads_are_all_written_whole(void **state)
{
    int target = make_target();
    uint64_t dropped = h2p_log_writer_dropped();
    assert_int_equal(h2p_log_writer_start(), 0);
    pthread_t threads[4];
    appender_t appenders[4];
    for (unsigned t = 0; t != 4; ++t) {
        appenders[t] = (appender_t){target, t, 20000};
        pthread_create(threads + t, NULL, append_lines, appenders + t);
    }
    for (unsigned t = 0; t != 4; ++t)
        pthread_join(threads[t], NULL);
    h2p_log_writer_reopen(); /* (no file moved: the same file goes on) */
    h2p_log_writer_stop();   /* writes what is still in the threads' buffers */
    assert_int_equal(h2p_log_writer_dropped(), dropped);
    assert_int_equal(count_lines(LINE_LEN), 4 * 20000);
}

/* The writer is not running: full buffers pile up to the bound, then are dropped and counted. */
static void a_writer_that_falls_behind_drops_and_counts(void **state)
{
    int target = make_target();
    uint64_t dropped = h2p_log_writer_dropped();
    enum { LONG_LINE = 1000, LINES = 40000 }; /* 40 MB: more than the 16 MiB bound */
    char *buf = malloc(LONG_LINE);
    for (unsigned i = 0; i != LINES; ++i) {
        format_line(buf, LONG_LINE, 0, i);
        assert_int_equal(h2p_log_writer_append(target, time(NULL), buf, LONG_LINE), 0); /* never blocks */
    }
    free(buf);
    uint64_t lost = h2p_log_writer_dropped() - dropped;
    assert_true(lost > 0);
    assert_true(LINES - lost > 15000); /* about 16 MiB of them were kept */
    assert_int_equal(h2p_log_writer_start(), 0);
    h2p_log_writer_stop();
    assert_int_equal(count_lines(LONG_LINE), LINES - lost); /* everything not counted as dropped is there */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* (first: before the writer's first start, appends are taken and wait for it) */
        cmocka_unit_test(a_writer_that_falls_behind_drops_and_counts),
        cmocka_unit_test(lines_from_many_threads_are_all_written_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
