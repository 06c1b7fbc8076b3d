/* The validation guest: a freestanding 32-bit multiboot kernel whose memory writes
 * are known, for recording real QEMU live migrations (see validation/README.md).
 *
 * Boot: `qemu-system-x86_64 -kernel guest.elf -append "mode=uniform rate=2000"`.
 * It fills its memory above 4 MiB (or the first `fill` percent of it) with
 * non-zero data, then writes pages forever in the pattern given on the command line,
 * and reports its write count on the debug console (port 0xe9, `-debugcon file:F`).
 *
 * Command line (key=value, integers):
 *   mode=idle|uniform|hot|cpu  idle: no writes (the guest spins on the TSC)
 *                              uniform: pages drawn uniformly at random, paced at `rate`
 *                              hot: a hot set of `hot` pages swept in order, paced at `rate`
 *                              cpu: uniform random pages as fast as the vCPU goes, with
 *                                   `work` iterations of busy work before each write, so a
 *                                   throttled vCPU really writes less
 *   rate=N     page writes per second (uniform, hot)
 *   hot=N      hot-set pages (hot), at the start of the region
 *   work=N     busy-loop iterations per write (cpu)
 *   fill=P     percent of the region filled with non-zero data (default 100); writes
 *              go to the filled part only, so the rest stays zero pages
 *   seed=N     random seed
 *   report=MS  report period in milliseconds (default 200)
 *
 * Pacing: a write is due every tsc_hz / rate ticks (TSC calibrated against the PIT);
 * a writer that falls behind catches up at most 25 ms worth of writes: a vCPU thread
 * preempted for a few milliseconds on a busy host keeps its rate, a paused vCPU does not
 * make up for the pause.
 *
 * Output lines (debug console):
 *   H tsc_khz=K mem_kib=M region_pages=N filled_pages=F mode=... rate=... hot=... work=...
 *   F <ms> <filled pages>      fill done, <ms> since the calibration
 *   R <ms> <writes>            every `report` ms: writes since the fill ended
 */
#include <stdint.h>

struct mb_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
};

#define PAGE 4096u
#define REGION_START 0x400000u /* 4 MiB: above the kernel, its stack and the BIOS areas */
#define DEBUGCON 0xe9

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint64_t rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static void puts_(const char *s) {
    while (*s) outb(DEBUGCON, (uint8_t)*s++);
}
static void putu(uint64_t v) {
    char buf[24];
    int i = 0;
    do {
        buf[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i) outb(DEBUGCON, (uint8_t)buf[--i]);
}
static void putkv(const char *k, uint64_t v) {
    puts_(" ");
    puts_(k);
    puts_("=");
    putu(v);
}

/* key=value lookup on the multiboot command line (QEMU prefixes the kernel's file name) */
static const char *find(const char *cmd, const char *key) {
    if (!cmd) return 0;
    for (const char *p = cmd; *p; p++) {
        if (p != cmd && p[-1] != ' ') continue;
        const char *k = key, *q = p;
        while (*k && *q == *k) k++, q++;
        if (!*k && *q == '=') return q + 1;
    }
    return 0;
}
static uint64_t num(const char *cmd, const char *key, uint64_t dflt) {
    const char *v = find(cmd, key);
    if (!v || *v < '0' || *v > '9') return dflt;
    uint64_t n = 0;
    while (*v >= '0' && *v <= '9') n = n * 10 + (uint64_t)(*v++ - '0');
    return n;
}
static int is_mode(const char *cmd, const char *name) {
    const char *v = find(cmd, "mode");
    if (!v) return 0;
    while (*name && *v == *name) v++, name++;
    return !*name && (*v == ' ' || *v == 0);
}

/* TSC ticks per second, against PIT channel 2 counting down 50 ms (as Linux's quick calibration) */
static uint64_t calibrate(void) {
    const uint32_t latch = 1193182 / 20;
    uint64_t best = ~(uint64_t)0;
    for (int i = 0; i < 3; i++) {
        outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01)); /* gate on, speaker off */
        outb(0x43, 0xb0);                                   /* channel 2, lo/hi byte, mode 0 */
        outb(0x42, (uint8_t)(latch & 0xff));
        outb(0x42, (uint8_t)(latch >> 8));
        uint64_t t0 = rdtsc();
        while (!(inb(0x61) & 0x20)) {
        }
        uint64_t d = rdtsc() - t0;
        if (d < best) best = d; /* the shortest: least disturbed by host preemption */
    }
    return best * 20;
}

static uint64_t rng;
static inline uint32_t rand32(void) { /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1DULL) >> 32);
}

void guest_main(const struct mb_info *mbi) {
    const char *cmd = (mbi->flags & 4) ? (const char *)(uintptr_t)mbi->cmdline : 0;
    uint64_t tsc_hz = calibrate();
    uint64_t mem_end = (uint64_t)1024 * 1024 + (uint64_t)mbi->mem_upper * 1024; /* bytes */
    uint32_t region_pages = mem_end > REGION_START ? (uint32_t)((mem_end - REGION_START) / PAGE) : 0;
    uint32_t fill_pct = (uint32_t)num(cmd, "fill", 100);
    if (fill_pct > 100) fill_pct = 100;
    uint32_t filled = (uint32_t)((uint64_t)region_pages * fill_pct / 100);
    uint32_t rate = (uint32_t)num(cmd, "rate", 1000);
    uint32_t hot = (uint32_t)num(cmd, "hot", 1000);
    uint32_t work = (uint32_t)num(cmd, "work", 100);
    uint64_t report_ticks = tsc_hz * num(cmd, "report", 200) / 1000;
    rng = num(cmd, "seed", 1) * 0x9E3779B97F4A7C15ULL + 0x1234567ULL;
    if (!rng) rng = 1;
    if (hot > filled) hot = filled;
    int mode = is_mode(cmd, "uniform") ? 1 : is_mode(cmd, "hot") ? 2 : is_mode(cmd, "cpu") ? 3 : 0;

    puts_("H");
    putkv("tsc_khz", tsc_hz / 1000);
    putkv("mem_kib", mem_end / 1024);
    putkv("region_pages", region_pages);
    putkv("filled_pages", filled);
    puts_(mode == 1 ? " mode=uniform" : mode == 2 ? " mode=hot" : mode == 3 ? " mode=cpu" : " mode=idle");
    putkv("rate", rate);
    putkv("hot", hot);
    putkv("work", work);
    puts_("\n");

    uint64_t t0 = rdtsc();
    /* fill: every 32-bit word non-zero and different from its neighbours */
    for (uint32_t pg = 0; pg < filled; pg++) {
        volatile uint32_t *p = (volatile uint32_t *)(uintptr_t)(REGION_START + pg * PAGE);
        uint32_t v = (pg + 1) * 2654435761u;
        for (uint32_t w = 0; w < PAGE / 4; w++) p[w] = (v + w * 40503u) | 1u;
    }
    uint64_t start = rdtsc();
    puts_("F ");
    putu((start - t0) * 1000 / tsc_hz);
    puts_(" ");
    putu(filled);
    puts_("\n");

    if (!filled) mode = 0;
    uint8_t *base = (uint8_t *)(uintptr_t)REGION_START;
    uint64_t count = 0;
    uint32_t k = 0;
    uint64_t period = rate ? tsc_hz / rate : tsc_hz;
    if (!period) period = 1;
    uint64_t slack = tsc_hz / 40; /* 25 ms: the most a late writer catches up */
    uint64_t next = start, next_report = start + report_ticks;
    uint64_t acc = 1;
    for (;;) {
        uint64_t now = rdtsc();
        if (now >= next_report) {
            puts_("R ");
            putu((now - start) * 1000 / tsc_hz);
            puts_(" ");
            putu(count);
            puts_("\n");
            next_report += report_ticks;
            if (next_report < now) next_report = now + report_ticks; /* after a pause, no burst of reports */
        }
        if (mode == 0) continue;
        if (mode == 3) {
            for (uint32_t i = 0; i < work; i++) acc = acc * 6364136223846793005ULL + 1442695040888963407ULL;
            uint32_t pg = (uint32_t)(((uint64_t)rand32() * filled) >> 32);
            volatile uint32_t *p = (volatile uint32_t *)(base + pg * PAGE);
            p[count & 1023] = (uint32_t)(acc >> 32) | 1u;
            count++;
            continue;
        }
        if (now < next) continue;
        if (now - next > slack) next = now - slack;
        while (next <= now) {
            uint32_t pg = mode == 1 ? (uint32_t)(((uint64_t)rand32() * filled) >> 32) : k++ % hot;
            volatile uint32_t *p = (volatile uint32_t *)(base + pg * PAGE);
            p[count & 1023] = (uint32_t)count | 1u;
            count++;
            next += period;
        }
    }
}
