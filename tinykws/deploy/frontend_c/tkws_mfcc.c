/* Fixed-point MFCC (see tkws_mfcc.h). Per frame:
 *   int16 -> q31, block scaling by a power of two (exact; undone in the log domain, so the level of
 *   the audio is kept: this is not a normalization), window (arm_mult_q31), arm_rfft_q31,
 *   magnitude, mel filters (arm_dot_prod_q31, q16.48), + a fixed floor, natural log (arm_vlog_q31),
 *   DCT (arm_mat_vec_mult_q31).
 * Written here rather than taken from CMSIS-DSP: the framing and ring buffer (CMSIS-DSP has no
 * incremental framing), the magnitude (arm_cmplx_mag_q31 truncates each square by 33 bits, which
 * zeroes bins more than about 80 dB below the frame's peak that the float front end still sees) and
 * the log floor (arm_mfcc_q31 normalizes each frame by its own peak and adds its offset after that,
 * so its floor moves with the level of the frame). */
#include "tkws_mfcc.h"

#define TKWS_LN2_Q26 46516320LL /* ln(2) * 2^26 */

#ifdef TKWS_MFCC_PROFILE /* stage marks for the cost per stage on the emulated Cortex-M7 */
void tkws_layer_mark(int i);
#define TKWS_MFCC_MARK(i) tkws_layer_mark(i)
#else
#define TKWS_MFCC_MARK(i)
#endif

static const arm_matrix_instance_q31 tkws_mfcc_dct_mat = {
    TKWS_MFCC_COEFS, TKWS_MFCC_MELS, (q31_t *)tkws_mfcc_dct};

int tkws_mfcc_init(tkws_mfcc_state *st)
{
    uint32_t i;
    for (i = 0; i < TKWS_MFCC_WIN; i++) {
        st->ring[i] = 0;
    }
    st->pos = 0;
    st->filled = 0;
    return TKWS_MFCC_RFFT_INIT(&st->rfft, 0, 1) != ARM_MATH_SUCCESS;
}

uint32_t tkws_mfcc_state_size(void)
{
    return (uint32_t)sizeof(tkws_mfcc_state);
}

/* sqrt(re^2 + im^2) in the units of re, im: the 64-bit sum of squares, normalized by an even shift,
 * through arm_sqrt_q31. */
static q31_t tkws_mag(q31_t re, q31_t im)
{
    uint64_t p = (uint64_t)((int64_t)re * re) + (uint64_t)((int64_t)im * im);
    int n, sh;
    q31_t v, r;
    if (p == 0) {
        return 0;
    }
    n = __builtin_clzll(p) & ~1;           /* even: p << n has its top bit at 63 or 62 */
    v = (q31_t)((p << n) >> 33);           /* in [2^29, 2^31) */
    arm_sqrt_q31(v, &r);                   /* r = sqrt(v * 2^31) */
    sh = n / 2 - 1;                        /* sqrt(p) = r * 2^((2 - n) / 2) */
    if (sh < 0) {
        return (r >= 0x40000000) ? 0x7FFFFFFF : r << 1;
    }
    return r >> sh;
}

/* st->frame holds TKWS_MFCC_WIN q31 samples (int16 << 16); writes the MFCCs. */
static void tkws_mfcc_compute(tkws_mfcc_state *st, int32_t *mfcc_q16)
{
    q31_t *x = st->frame;
    const q31_t *spec = st->spec;
    uint32_t i, m = 0, coef = 0;
    int32_t s = 0;

    TKWS_MFCC_MARK(1);
    for (i = 0; i < TKWS_MFCC_WIN; i++) {
        m |= (x[i] < 0) ? (uint32_t)(-(int64_t)x[i]) : (uint32_t)x[i];
    }
    if (m != 0) {
        s = (int32_t)__builtin_clz(m) - 1; /* the largest |x| gets its top bit at bit 30 */
        if (s < 0) {
            s = 0;
        }
    }
    arm_shift_q31(x, (int8_t)s, x, TKWS_MFCC_WIN);
    arm_mult_q31(x, tkws_mfcc_window, x, TKWS_MFCC_WIN);
    for (i = TKWS_MFCC_WIN; i < TKWS_MFCC_FFT; i++) {
        x[i] = 0;
    }
    TKWS_MFCC_MARK(2);
    arm_rfft_q31(&st->rfft, x, st->spec); /* output: X / 2^TKWS_MFCC_FFT_BITS */
    TKWS_MFCC_MARK(3);

    for (i = 0; i < TKWS_MFCC_BINS; i++) { /* the frame buffer now holds the magnitudes */
        x[i] = tkws_mag(spec[2 * i], spec[2 * i + 1]);
    }
    TKWS_MFCC_MARK(4);
    for (i = 0; i < TKWS_MFCC_MELS; i++) {
        q63_t acc;
        uint64_t L;
        int32_t e;
        q31_t u, lg;
        int64_t t;
        arm_dot_prod_q31(x + tkws_mfcc_mel_pos[i], tkws_mfcc_mel_coefs + coef, tkws_mfcc_mel_len[i], &acc);
        coef += tkws_mfcc_mel_len[i];
        /* acc = mel * 2^(48 - FFT_BITS + s) (q16.48); the floor in the same units */
        L = (uint64_t)acc + ((uint64_t)TKWS_MFCC_FLOOR_ACC << s);
        e = 63 - __builtin_clzll(L);
        u = (q31_t)(e >= 30 ? (L >> (e - 30)) : (L << (30 - e))); /* in [2^30, 2^31) */
        arm_vlog_q31(&u, &lg, 1);                                  /* ln(u / 2^31), q5.26 */
        /* ln(mel + floor) = ln(u / 2^31) + (e + 1 - 48 + FFT_BITS - s) ln 2 */
        t = (int64_t)lg + (int64_t)(e + 1 - 48 + TKWS_MFCC_FFT_BITS - s) * TKWS_LN2_Q26;
        st->logmel[i] = (q31_t)((t + (1 << 9)) >> 10);             /* 16 fractional bits */
    }
    TKWS_MFCC_MARK(5);
    arm_mat_vec_mult_q31(&tkws_mfcc_dct_mat, st->logmel, (q31_t *)mfcc_q16);
    TKWS_MFCC_MARK(6);
}

void tkws_mfcc_frame(tkws_mfcc_state *st, const int16_t *samples, int32_t *mfcc_q16)
{
    uint32_t i;
    for (i = 0; i < TKWS_MFCC_WIN; i++) {
        st->frame[i] = (q31_t)samples[i] << 16;
    }
    tkws_mfcc_compute(st, mfcc_q16);
}

int tkws_mfcc_push(tkws_mfcc_state *st, const int16_t *hop, int32_t *mfcc_q16)
{
    uint32_t i, p = st->pos;
    for (i = 0; i < TKWS_MFCC_HOP; i++) {
        st->ring[p] = hop[i];
        p = (p + 1 == TKWS_MFCC_WIN) ? 0 : p + 1;
    }
    st->pos = p;
    st->filled = (st->filled + TKWS_MFCC_HOP >= TKWS_MFCC_WIN) ? TKWS_MFCC_WIN : st->filled + TKWS_MFCC_HOP;
    if (st->filled < TKWS_MFCC_WIN) {
        return 0;
    }
    for (i = 0; i < TKWS_MFCC_WIN; i++) { /* oldest first */
        st->frame[i] = (q31_t)st->ring[p] << 16;
        p = (p + 1 == TKWS_MFCC_WIN) ? 0 : p + 1;
    }
    tkws_mfcc_compute(st, mfcc_q16);
    return 1;
}

int tkws_mfcc_clip(tkws_mfcc_state *st, const int16_t *x, int32_t n, int32_t *mfcc_q16)
{
    int32_t f = 0, start;
    for (start = 0; start + TKWS_MFCC_WIN <= n; start += TKWS_MFCC_HOP, f++) {
        tkws_mfcc_frame(st, x + start, mfcc_q16 + f * TKWS_MFCC_COEFS);
    }
    return f;
}

void tkws_mfcc_to_s8(const int32_t *mfcc_q16, int8_t *out, int32_t n, int32_t mult, int32_t shift, int32_t zp)
{
    int32_t i;
    const int64_t half = (int64_t)1 << (30 + shift);
    for (i = 0; i < n; i++) {
        int64_t v = (((int64_t)mfcc_q16[i] * mult + half) >> (31 + shift)) + zp;
        out[i] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
    }
}
