/* Always-on keyword detection on a stream of int16 audio: ring buffer, incremental fixed-point MFCC
 * (tkws_mfcc_push, one frame per hop), the model's int8 input as a sliding window of the last
 * TKWS_STREAM_FRAMES frames, the network every TKWS_STREAM_HOP_MS, and TFLite Micro's
 * RecognizeCommands smoothing (integer scores 0-255 averaged over TKWS_STREAM_WINDOW_MS with
 * integer division, threshold, suppression, minimum count), as tinykws.stream.detector.
 *
 *     static tkws_stream s;
 *     tkws_stream_init(&s, on_event, 0, 0);
 *     for each block of audio (any number of samples):
 *         tkws_stream_push(&s, samples, n);     // calls on_event(e, user) for each detection
 *
 * Settings come from the generated tkws_stream_config.h. No malloc, no floating point.
 */
#ifndef TKWS_STREAM_H
#define TKWS_STREAM_H

#include <stdint.h>
#include "model.h"
#include "tkws_mfcc.h"
#include "tkws_stream_config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t label;    /* index into tkws_labels (a keyword: never _silence_ or _unknown_) */
    uint32_t time_ms; /* stream time of the newest sample of the window whose result fired */
    int32_t score;    /* averaged score, 0-255 (probability * 256) */
} tkws_event;

typedef void (*tkws_event_fn)(const tkws_event *e, void *user);
/* every network result: its time and TKWS_NUM_LABELS scores 0-255 (optional, for checks) */
typedef void (*tkws_result_fn)(uint32_t time_ms, const uint8_t *scores, void *user);

typedef struct {
    tkws_mfcc_state mfcc;
    int16_t hop[TKWS_MFCC_HOP];          /* samples of the hop being filled */
    uint32_t hop_fill;
    uint32_t hops;                       /* hops consumed */
    uint32_t frames;                     /* MFCC frames computed */
    uint32_t frame_pos;                  /* next slot of the frame ring */
    int8_t ring[TKWS_STREAM_FRAMES * TKWS_MFCC_COEFS]; /* int8 features of the last frames */
    int8_t input[TKWS_INPUT_SIZE];
    int8_t output[TKWS_OUTPUT_SIZE];
    uint32_t res_time[TKWS_STREAM_RESULTS]; /* the results inside the averaging window */
    uint8_t res_score[TKWS_STREAM_RESULTS][TKWS_NUM_LABELS];
    uint32_t res_first, res_count;
    int32_t prev_label;                  /* the label that fired last; -1: none yet */
    uint32_t prev_time;
    tkws_event_fn on_event;
    tkws_result_fn on_result;
    void *user;
} tkws_stream;

/* 0 on success (nonzero: the MFCC's FFT size is not supported). */
int tkws_stream_init(tkws_stream *s, tkws_event_fn on_event, tkws_result_fn on_result, void *user);

/* Consumes n samples (any n); returns the number of events fired, or < 0 when the network failed. */
int tkws_stream_push(tkws_stream *s, const int16_t *audio, uint32_t n);

#ifdef __cplusplus
}
#endif
#endif
