/* A program with a known schedule of page writes, for tests/test_record.py.
 *
 * It aligns itself on the recorder's intervals (DIRTYLOG_RECORD_T0 and
 * DIRTYLOG_RECORD_INTERVAL, set by the recorder) and, in the middle of interval k,
 * writes the pages of its schedule: region A (64 pages, mapped at start) gets pages
 * {k, 2k + 20, 63 - k} for k = 1..6; region B (16 pages) is mapped in interval 4 and
 * its pages 0..3 written at once; a second thread writes page 40 of A in interval 5.
 * It prints "A <address>" and "B <address>" on stdout, then exits in interval 8.
 *
 * Under `dirtylog record --pid` (tests/test_record_pid.py) there is no environment to
 * read: it prints "A <address>" at once, then reads "T0 INTERVAL" (ns) from stdin, sent
 * when the recording starts, and follows the same schedule; the recording stops after
 * interval 7, and the program runs on untracked: in intervals 9 and 10 it writes pages
 * 50 and 51 of A, and prints "UFFD <n>", its open userfaultfd descriptors.
 * Before it exits it checks the content of every page of A and B (exit status 5 if one
 * is wrong: the recorder must leave the program's memory as the program wrote it).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

static uint64_t t0, ivl;
static volatile char *A, *B;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000ull), (long)(t % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

static void *writer(void *arg)
{
    (void)arg;
    sleep_until(t0 + 5 * ivl + ivl / 2);
    A[40 * 4096] = 7;
    return NULL;
}

/* The open userfaultfd descriptors of this process. */
static int count_uffd(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    char path[300], target[256];
    while (d && (e = readdir(d)) != NULL) {
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, target, sizeof target - 1);
        if (len > 0) {
            target[len] = 0;
            n += strstr(target, "userfaultfd") != NULL;
        }
    }
    if (d)
        closedir(d);
    return n;
}

/* Every page of A and B holds what the schedule wrote there (0 if nothing). */
static int content_ok(int pid_mode)
{
    for (int p = 0; p < 64; p++) {
        char want = 0;
        if ((p >= 1 && p <= 6) || (p >= 22 && p <= 32 && p % 2 == 0) || (p >= 57 && p <= 62))
            want = 1;
        if (p == 40)
            want = 7;
        if (pid_mode && (p == 50 || p == 51))
            want = 9;
        for (int i = 0; i < 4096; i += 512)
            if (A[p * 4096 + i] != (i == 0 ? want : 0))
                return 0;
    }
    for (int p = 0; p < 16; p++)
        if (B[p * 4096] != (p < 4 ? 1 : 0))
            return 0;
    return 1;
}

int main(void)
{
    const char *e0 = getenv("DIRTYLOG_RECORD_T0"), *e1 = getenv("DIRTYLOG_RECORD_INTERVAL");
    int pid_mode = !e0 || !e1;
    A = mmap(NULL, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (A == MAP_FAILED)
        return 4;
    printf("A %lu\n", (unsigned long)(uintptr_t)A);
    fflush(stdout);
    if (pid_mode) {
        unsigned long long a = 0, b = 0;
        if (scanf("%llu %llu", &a, &b) != 2) { /* blocks in read(2) while the recorder injects */
            fprintf(stderr, "not under the recorder, and no \"T0 INTERVAL\" on stdin\n");
            return 3;
        }
        t0 = a;
        ivl = b;
    } else {
        t0 = strtoull(e0, NULL, 10);
        ivl = strtoull(e1, NULL, 10);
    }
    pthread_t th;
    pthread_create(&th, NULL, writer, NULL);
    for (int k = 1; k <= 6; k++) {
        sleep_until(t0 + (uint64_t)k * ivl + ivl / 2);
        A[k * 4096] = 1;
        A[(2 * k + 20) * 4096] = 1;
        A[(63 - k) * 4096] = 1;
        if (k == 4) {
            B = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            for (int p = 0; p < 4; p++)
                B[p * 4096] = 1;
            printf("B %lu\n", (unsigned long)(uintptr_t)B);
            fflush(stdout);
        }
    }
    pthread_join(th, NULL);
    if (pid_mode) { /* the recording has ended: run on */
        sleep_until(t0 + 9 * ivl + ivl / 2);
        A[50 * 4096] = 9;
        sleep_until(t0 + 10 * ivl + ivl / 2);
        A[51 * 4096] = 9;
        printf("UFFD %d\n", count_uffd());
        fflush(stdout);
    } else {
        sleep_until(t0 + 8 * ivl + ivl / 2);
    }
    return content_ok(pid_mode) ? 0 : 5;
}
