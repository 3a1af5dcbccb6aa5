/* A stand-in for the Edge TPU runtime (libedgetpu.so.1) for tests on machines without a Coral.
 *
 * It exports what the interpreter's load_delegate() and the kit look up: the TFLite plugin entry points
 * tflite_plugin_create_delegate / tflite_plugin_destroy_delegate and edgetpu_version(). How the delegate
 * creation misbehaves is chosen when it is compiled:
 *   -DFAKE_SEGV     the entry point dereferences a null pointer (what a mismatched build does)
 *   -DFAKE_HANG     the entry point never returns
 *   (neither)       the entry point returns no delegate (NULL), as the real one does when it cannot open a TPU
 *   -DFAKE_VERSION="..."  the build label edgetpu_version() returns
 */
#include <stddef.h>
#include <unistd.h>

#ifndef FAKE_VERSION
#define FAKE_VERSION "BuildLabel(COMPILER=test,DATE=test,TIME=test), RuntimeVersion(14)"
#endif

typedef void (*error_handler)(const char *);

const char *edgetpu_version(void) { return FAKE_VERSION; }

void *tflite_plugin_create_delegate(char **keys, char **values, size_t count, error_handler report) {
    (void)keys;
    (void)values;
    (void)count;
    (void)report;
#if defined(FAKE_SEGV)
    volatile int *nowhere = NULL;
    *nowhere = 1;
#elif defined(FAKE_HANG)
    for (;;) pause();
#endif
    return NULL;
}

void tflite_plugin_destroy_delegate(void *delegate) { (void)delegate; }
