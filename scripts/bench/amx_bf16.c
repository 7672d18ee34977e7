/* AMX bf16 on this CPU: is it usable, how fast is TDPBF16PS on the encoder's first layer
 * (rows x 224 inputs x 256 outputs), and does any simple scalar model reproduce its rounding
 * (what a bit-identical fallback for CPUs without AMX would need)?
 *
 *   gcc -O2 -mamx-tile -mamx-bf16 -ffp-contract=off scripts/bench/amx_bf16.c -o /tmp/amx_bf16
 *   /tmp/amx_bf16
 *
 * Linux needs arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) before the first tile
 * instruction. The throughput loop keeps A and B in cache and writes C once per tile: an upper
 * bound for a real kernel, which would also convert x to bf16.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tile_config;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
static float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint64_t state = 88172645463325252ull;
static uint64_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}
/* A bf16 of either sign, exponent within 2^-10..2^10. */
static uint16_t random_bf16(void) {
    uint32_t sign = next() & 1, exponent = 127 + (int)(next() % 21) - 10, mantissa = next() & 0x7f;
    return (uint16_t)((sign << 15) | (exponent << 7) | mantissa);
}

static void throughput(int rows, int repeats) {
    const int K = 224, N = 256;
    uint16_t *A = aligned_alloc(64, (size_t)rows * K * 2), *B = aligned_alloc(64, K * N * 2);
    float *C = aligned_alloc(64, (size_t)rows * N * 4);
    for (size_t i = 0; i < (size_t)rows * K; i++) A[i] = 0x3f80; /* 1.0 */
    for (int i = 0; i < K * N; i++) B[i] = 0x3c00;               /* 2^-7 */
    double start = now();
    for (int r = 0; r < repeats; r++)
        for (int m = 0; m < rows; m += 32)
            for (int n = 0; n < N; n += 32) {
                _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
                for (int k = 0; k < K; k += 32) {
                    _tile_loadd(4, A + (size_t)m * K + k, K * 2);
                    _tile_loadd(5, A + (size_t)(m + 16) * K + k, K * 2);
                    /* B packed in pairs of reduction rows: panel of 16 columns, K/2 rows of 64 bytes */
                    _tile_loadd(6, B + (size_t)(n / 16) * K * 16 + (k / 2) * 32, 64);
                    _tile_loadd(7, B + (size_t)(n / 16 + 1) * K * 16 + (k / 2) * 32, 64);
                    _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
                }
                _tile_stored(0, C + (size_t)m * N + n, N * 4);
                _tile_stored(1, C + (size_t)m * N + n + 16, N * 4);
                _tile_stored(2, C + (size_t)(m + 16) * N + n, N * 4);
                _tile_stored(3, C + (size_t)(m + 16) * N + n + 16, N * 4);
            }
    double seconds = now() - start;
    printf("rows %6d x 224 x 256: %.1f GFLOP/s on one core (C[0] = %g, expected 1.75)\n", rows,
           2.0 * rows * K * N * repeats / seconds / 1e9, C[0]);
    free(A); free(B); free(C);
}

/* One TDPBF16PS on random tiles against scalar models of its arithmetic. */
static void rounding(void) {
    long total = 0, mismatches[5] = {0};
    for (int round = 0; round < 2000; round++) {
        uint16_t A[16 * 32], B[16 * 32];
        float C[256], C0[256];
        for (int i = 0; i < 512; i++) { A[i] = random_bf16(); B[i] = random_bf16(); }
        for (int i = 0; i < 256; i++) C0[i] = (round % 2) ? from_bf16(random_bf16()) : 0.0f;
        memcpy(C, C0, sizeof C);
        _tile_loadd(0, C, 64); _tile_loadd(1, A, 64); _tile_loadd(2, B, 64);
        _tile_dpbf16ps(0, 1, 2);
        _tile_stored(0, C, 64);
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 16; n++) {
                float sequential = C0[m * 16 + n], pairs = sequential;
                double exact = 0;
                for (int k = 0; k < 16; k++) {
                    float p0 = from_bf16(A[m * 32 + 2 * k]) * from_bf16(B[k * 32 + 2 * n]);
                    float p1 = from_bf16(A[m * 32 + 2 * k + 1]) * from_bf16(B[k * 32 + 2 * n + 1]);
                    sequential = sequential + p0; /* products of bf16s are exact in f32 */
                    sequential = sequential + p1;
                    pairs = pairs + (p0 + p1);
                    exact += (double)p0 + (double)p1;
                }
                float got = C[m * 16 + n];
                float once = (float)(exact + (double)C0[m * 16 + n]);
                float then_add = C0[m * 16 + n] + (float)exact;
                total++;
                mismatches[0] += got != sequential;
                mismatches[1] += got != pairs;
                mismatches[2] += got != once;
                mismatches[3] += got != then_add;
            }
    }
    printf("TDPBF16PS vs scalar models, %ld elements: in order %ld differ, pairs first %ld, "
           "one rounding %ld, the 32 products exactly then one add %ld\n",
           total, mismatches[0], mismatches[1], mismatches[2], mismatches[3]);
}

int main(void) {
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) != 0) {
        printf("AMX tile data not permitted here\n");
        return 1;
    }
    tile_config config;
    memset(&config, 0, sizeof config);
    config.palette_id = 1;
    for (int t = 0; t < 8; t++) { config.rows[t] = 16; config.colsb[t] = 64; }
    _tile_loadconfig(&config);
    throughput(256, 4000);
    throughput(4096, 300);
    throughput(65536, 20);
    rounding();
    _tile_release();
    return 0;
}
