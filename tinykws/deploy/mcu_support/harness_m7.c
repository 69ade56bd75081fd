/* Bare-metal harness: run the network once on tkws_mcu_input, write tkws_mcu_output, stop in
 * tkws_mcu_done (the emulator stops at its address; on a board a debugger breaks there). */
#include <stdint.h>
#include "model.h"

__attribute__((section(".noinit"), aligned(8))) int8_t tkws_mcu_input[TKWS_INPUT_SIZE];
__attribute__((section(".noinit"), aligned(8))) int8_t tkws_mcu_output[TKWS_OUTPUT_SIZE];
__attribute__((section(".noinit"))) volatile int32_t tkws_mcu_status;

__attribute__((noinline)) void tkws_mcu_done(void)
{
    __asm volatile("bkpt #0");
    for (;;) {
    }
}

int main(void)
{
    tkws_mcu_status = tkws_invoke(tkws_mcu_input, tkws_mcu_output);
    tkws_mcu_done();
    return 0;
}

/* newlib-nano without semihosting: nothing is printed, so no system call is ever reached */
void _exit(int code)
{
    (void)code;
    tkws_mcu_done();
    for (;;) {
    }
}
