/* Fixed-point MFCC of the tinykws "device" front end, one frame per hop of int16 audio.
 *
 * Built on CMSIS-DSP (q31 real FFT, square root, log, dot products, matrix-vector product); the
 * constants of one front end (window, mel filters, DCT, floor) come from the generated
 * tkws_mfcc_config.h / tkws_mfcc_tables.c (tinykws.deploy.frontend.write_mfcc_sources).
 *
 *     static tkws_mfcc_state st;
 *     tkws_mfcc_init(&st);
 *     for each hop of TKWS_MFCC_HOP new samples:
 *         if (tkws_mfcc_push(&st, hop, mfcc_q16)) { ... one new frame of TKWS_MFCC_COEFS values ... }
 *
 * Output: MFCCs as int32 with 16 fractional bits (value * 65536); tkws_mfcc_to_s8 turns them into
 * the model's int8 input (scale / zero point folded into mult, shift by tinykws).
 */
#ifndef TKWS_MFCC_H
#define TKWS_MFCC_H

#include <stdint.h>
/* The cmsisdsp source distribution ships no CMSIS Core headers, so CMSIS-DSP is built in its portable
 * mode (__GNUC_PYTHON__); define TKWS_MFCC_CMSIS_CORE to build against CMSIS Core instead. */
#if !defined(TKWS_MFCC_CMSIS_CORE) && !defined(__GNUC_PYTHON__)
#define __GNUC_PYTHON__ 1
#endif
#include "arm_math.h"
#include "tkws_mfcc_config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int16_t ring[TKWS_MFCC_WIN];      /* the last TKWS_MFCC_WIN samples; ring[pos] is the oldest */
    uint32_t pos;                     /* next write index */
    uint32_t filled;                  /* samples received so far, saturating at TKWS_MFCC_WIN */
    arm_rfft_instance_q31 rfft;
    q31_t frame[TKWS_MFCC_FFT];       /* windowed frame (FFT input, modified by the FFT); then magnitudes */
    q31_t spec[2 * TKWS_MFCC_FFT];    /* FFT output: re, im of bins 0..FFT/2 (and their mirror) */
    q31_t logmel[TKWS_MFCC_MELS];     /* log mel energies, 16 fractional bits */
} tkws_mfcc_state;

/* Clears the ring buffer and sets up the FFT; returns 0 (nonzero: the FFT size is not supported). */
int tkws_mfcc_init(tkws_mfcc_state *st);

/* Consumes TKWS_MFCC_HOP new samples. Returns 1 and writes TKWS_MFCC_COEFS values to mfcc_q16 when
 * the ring holds a full frame (the frame ends at the newest sample), else 0. */
int tkws_mfcc_push(tkws_mfcc_state *st, const int16_t *hop, int32_t *mfcc_q16);

/* One frame from TKWS_MFCC_WIN samples in time order (does not touch the ring). */
void tkws_mfcc_frame(tkws_mfcc_state *st, const int16_t *samples, int32_t *mfcc_q16);

/* All frames of a clip of n samples, framed as the training front end (frame i starts at i * HOP);
 * returns the number of frames written (TKWS_MFCC_COEFS values each). */
int tkws_mfcc_clip(tkws_mfcc_state *st, const int16_t *x, int32_t n, int32_t *mfcc_q16);

/* int8 model input: clamp(zp + round(v * mult / 2^(31 + shift))), n values. */
void tkws_mfcc_to_s8(const int32_t *mfcc_q16, int8_t *out, int32_t n, int32_t mult, int32_t shift, int32_t zp);

/* sizeof(tkws_mfcc_state), for callers that allocate it (the host mirror). */
uint32_t tkws_mfcc_state_size(void);

#ifdef __cplusplus
}
#endif
#endif
