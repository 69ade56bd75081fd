/* Host harness of the streaming loop: int16 little-endian audio on stdin, pushed in blocks of
 * argv[1] samples (default 512); one line per detection on stdout: "E label time_ms score"; with
 * argv[2] = "-r" also every network result: "R time_ms score0 score1 ...". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tkws_stream.h"

static void on_event(const tkws_event *e, void *user)
{
    (void)user;
    printf("E %ld %lu %ld\n", (long)e->label, (unsigned long)e->time_ms, (long)e->score);
}

static void on_result(uint32_t time_ms, const uint8_t *scores, void *user)
{
    int k;
    (void)user;
    printf("R %lu", (unsigned long)time_ms);
    for (k = 0; k < TKWS_NUM_LABELS; k++) {
        printf(" %d", scores[k]);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    static tkws_stream s;
    static int16_t buf[65536];
    long chunk = argc > 1 ? atol(argv[1]) : 512;
    int results = argc > 2 && strcmp(argv[2], "-r") == 0;
    size_t got;
    if (chunk < 1 || chunk > 65536) {
        fprintf(stderr, "block size must be 1-65536 samples\n");
        return 2;
    }
    if (tkws_stream_init(&s, on_event, results ? on_result : 0, 0) != 0) {
        fprintf(stderr, "tkws_stream_init failed\n");
        return 1;
    }
    while ((got = fread(buf, sizeof(int16_t), (size_t)chunk, stdin)) > 0) {
        if (tkws_stream_push(&s, buf, (uint32_t)got) < 0) {
            fprintf(stderr, "the network failed\n");
            return 1;
        }
    }
    return 0;
}
