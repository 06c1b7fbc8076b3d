/* Write-heavy benchmark program for benchmarks/bench_record.py: maps MiB of anonymous memory,
 * writes every page once (populating it), then makes WRITES writes to random pages and prints
 * "t_start_ns t_end_ns writes" (CLOCK_MONOTONIC) of that timed phase. With a third argument
 * "wait" it prints "ready" after populating and waits for a line on stdin before the timed
 * phase (for `dirtylog record --pid`, which attaches to it then). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: randwrite MIB WRITES [wait]\n");
        return 2;
    }
    uint64_t pages = strtoull(argv[1], NULL, 10) * 256, writes = strtoull(argv[2], NULL, 10);
    volatile uint8_t *m = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 1;
    for (uint64_t p = 0; p < pages; p++)
        m[p * 4096] = 1;
    if (argc == 4) {
        char line[64];
        printf("ready\n");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin))
            return 3;
    }
    uint64_t x = 0x9E3779B97F4A7C15ull, t0 = now_ns();
    for (uint64_t i = 0; i < writes; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        m[(x % pages) * 4096 + (i & 4095)] = (uint8_t)i;
    }
    uint64_t t1 = now_ns();
    printf("%llu %llu %llu\n", (unsigned long long)t0, (unsigned long long)t1, (unsigned long long)writes);
    return 0;
}
