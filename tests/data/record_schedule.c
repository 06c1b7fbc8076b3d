/* A program with a known schedule of page writes, for tests/test_record.py.
 *
 * It aligns itself on the recorder's intervals (DIRTYLOG_RECORD_T0 and
 * DIRTYLOG_RECORD_INTERVAL, set by the recorder) and, in the middle of interval k,
 * writes the pages of its schedule: region A (64 pages, mapped at start) gets pages
 * {k, 2k + 20, 63 - k} for k = 1..6; region B (16 pages) is mapped in interval 4 and
 * its pages 0..3 written at once; a second thread writes page 40 of A in interval 5.
 * It prints "A <address>" and "B <address>" on stdout, then exits in interval 8.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t t0, ivl;
static volatile char *A;

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

int main(void)
{
    const char *e0 = getenv("DIRTYLOG_RECORD_T0"), *e1 = getenv("DIRTYLOG_RECORD_INTERVAL");
    if (!e0 || !e1) {
        fprintf(stderr, "not under the recorder\n");
        return 3;
    }
    t0 = strtoull(e0, NULL, 10);
    ivl = strtoull(e1, NULL, 10);
    A = mmap(NULL, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (A == MAP_FAILED)
        return 4;
    printf("A %lu\n", (unsigned long)(uintptr_t)A);
    fflush(stdout);
    pthread_t th;
    pthread_create(&th, NULL, writer, NULL);
    for (int k = 1; k <= 6; k++) {
        sleep_until(t0 + (uint64_t)k * ivl + ivl / 2);
        A[k * 4096] = 1;
        A[(2 * k + 20) * 4096] = 1;
        A[(63 - k) * 4096] = 1;
        if (k == 4) {
            volatile char *B = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            for (int p = 0; p < 4; p++)
                B[p * 4096] = 1;
            printf("B %lu\n", (unsigned long)(uintptr_t)B);
            fflush(stdout);
        }
    }
    pthread_join(th, NULL);
    sleep_until(t0 + 8 * ivl + ivl / 2);
    return 0;
}
