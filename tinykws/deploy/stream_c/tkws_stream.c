/* The streaming loop (see tkws_stream.h). Hand-written: it must match tinykws.stream's integer
 * RecognizeCommands bit for bit, and no library provides this loop for a generated network. */
#include <string.h>
#include "tkws_stream.h"
#include "tkws_nn.h"

#ifdef TKWS_STREAM_PROFILE /* marks around the network and the detection (cost on the emulated M7) */
void tkws_layer_mark(int i);
#define TKWS_STREAM_MARK(i) tkws_layer_mark(i)
#else
#define TKWS_STREAM_MARK(i)
#endif

#if TKWS_STREAM_SOFTMAX
static const tkws_softmax_params tkws_stream_softmax = {
    1, TKWS_NUM_LABELS, TKWS_STREAM_SOFTMAX_MULT, TKWS_STREAM_SOFTMAX_SHIFT, TKWS_STREAM_SOFTMAX_DIFF_MIN};
#endif

int tkws_stream_init(tkws_stream *s, tkws_event_fn on_event, tkws_result_fn on_result, void *user)
{
    memset(s, 0, sizeof(*s));
    s->prev_label = -1;
    s->on_event = on_event;
    s->on_result = on_result;
    s->user = user;
    return tkws_mfcc_init(&s->mfcc);
}

/* RecognizeCommands on one new result; returns 1 when a keyword fired. */
static int tkws_stream_detect(tkws_stream *s, uint32_t now, const uint8_t *scores)
{
    uint32_t i, k, slot;
    uint32_t sum[TKWS_NUM_LABELS];
    int32_t top = 0, top_score;
    /* keep the results with time >= now - window (the window includes its start) */
    while (s->res_count > 0 && (uint64_t)s->res_time[s->res_first] + TKWS_STREAM_WINDOW_MS < now) {
        s->res_first = (s->res_first + 1) % TKWS_STREAM_RESULTS;
        s->res_count--;
    }
    if (s->res_count == TKWS_STREAM_RESULTS) { /* cannot happen with evenly spaced results; drop the oldest */
        s->res_first = (s->res_first + 1) % TKWS_STREAM_RESULTS;
        s->res_count--;
    }
    slot = (s->res_first + s->res_count) % TKWS_STREAM_RESULTS;
    s->res_time[slot] = now;
    memcpy(s->res_score[slot], scores, TKWS_NUM_LABELS);
    s->res_count++;
    if (s->res_count < TKWS_STREAM_MIN_COUNT || now - s->res_time[s->res_first] < TKWS_STREAM_WINDOW_MS / 4) {
        return 0;
    }
    for (k = 0; k < TKWS_NUM_LABELS; k++) {
        sum[k] = 0;
    }
    for (i = 0, slot = s->res_first; i < s->res_count; i++, slot = (slot + 1) % TKWS_STREAM_RESULTS) {
        for (k = 0; k < TKWS_NUM_LABELS; k++) {
            sum[k] += s->res_score[slot][k];
        }
    }
    top_score = (int32_t)(sum[0] / s->res_count);
    for (k = 1; k < TKWS_NUM_LABELS; k++) { /* the first of equal maxima */
        int32_t a = (int32_t)(sum[k] / s->res_count);
        if (a > top_score) {
            top_score = a;
            top = (int32_t)k;
        }
    }
    if (top_score <= TKWS_STREAM_THRESHOLD) {
        return 0;
    }
    if (top != s->prev_label || s->prev_label < 0 || s->prev_label == TKWS_STREAM_SILENCE
        || now - s->prev_time > TKWS_STREAM_SUPPRESSION_MS) {
        s->prev_label = top;
        s->prev_time = now;
        if (top != TKWS_STREAM_SILENCE && top != TKWS_STREAM_UNKNOWN) {
            tkws_event e;
            e.label = top;
            e.time_ms = now;
            e.score = top_score;
            if (s->on_event) {
                s->on_event(&e, s->user);
            }
            return 1;
        }
    }
    return 0;
}

/* One full hop in s->hop: the new frame, and the network when a classification is due. */
static int tkws_stream_hop(tkws_stream *s)
{
    int32_t mfcc[TKWS_MFCC_COEFS];
    uint8_t scores[TKWS_NUM_LABELS];
    uint32_t k, now, old;
    int fired;
    s->hops++;
    if (!tkws_mfcc_push(&s->mfcc, s->hop, mfcc)) {
        return 0;
    }
    tkws_mfcc_to_s8(mfcc, s->ring + s->frame_pos * TKWS_MFCC_COEFS, TKWS_MFCC_COEFS, TKWS_STREAM_IN_MULT,
                    TKWS_STREAM_IN_SHIFT, TKWS_STREAM_IN_ZP);
    s->frame_pos = (s->frame_pos + 1 == TKWS_STREAM_FRAMES) ? 0 : s->frame_pos + 1;
    s->frames++;
    if (s->frames < TKWS_STREAM_FRAMES || (s->frames - TKWS_STREAM_FRAMES) % TKWS_STREAM_STEP != 0) {
        return 0;
    }
    /* the window in time order: the oldest frame sits at frame_pos */
    old = (TKWS_STREAM_FRAMES - s->frame_pos) * TKWS_MFCC_COEFS;
    memcpy(s->input, s->ring + s->frame_pos * TKWS_MFCC_COEFS, old);
    memcpy(s->input + old, s->ring, s->frame_pos * TKWS_MFCC_COEFS);
    TKWS_STREAM_MARK(1);
    if (tkws_invoke(s->input, s->output) != 0) {
        return -1;
    }
#if TKWS_STREAM_SOFTMAX
    tkws_softmax_s8_ref(&tkws_stream_softmax, s->output, s->output, 0);
#endif
    TKWS_STREAM_MARK(2);
    for (k = 0; k < TKWS_NUM_LABELS; k++) {
        scores[k] = (uint8_t)(s->output[k] + 128);
    }
    now = (uint32_t)(((uint64_t)s->hops * TKWS_MFCC_HOP * 1000u) / TKWS_MFCC_SAMPLE_RATE);
    if (s->on_result) {
        s->on_result(now, scores, s->user);
    }
    fired = tkws_stream_detect(s, now, scores);
    TKWS_STREAM_MARK(3);
    return fired;
}

int tkws_stream_push(tkws_stream *s, const int16_t *audio, uint32_t n)
{
    int fired = 0;
    while (n > 0) {
        uint32_t take = TKWS_MFCC_HOP - s->hop_fill;
        if (take > n) {
            take = n;
        }
        memcpy(s->hop + s->hop_fill, audio, take * sizeof(int16_t));
        s->hop_fill += take;
        audio += take;
        n -= take;
        if (s->hop_fill == TKWS_MFCC_HOP) {
            int r;
            s->hop_fill = 0;
            r = tkws_stream_hop(s);
            if (r < 0) {
                return r;
            }
            fired += r;
        }
    }
    return fired;
}
