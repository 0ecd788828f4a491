/* error.c: the last error of each thread, and the error codes' strings. */
#include "internal.h"
#include <stdarg.h>
#include <string.h>

static _Thread_local char last_msg[512];
static _Thread_local int last_code;

const char *tg_last_error(void) { return last_msg; }
int tg_last_error_code(void) { return last_code; }

void tg_clear_error(void) {
    last_msg[0] = '\0';
    last_code = 0;
}

int tg_fail(int code, const char *fmt, ...) {
    if (!fmt) fmt = "(no message)";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof last_msg, fmt, ap);
    va_end(ap);
    last_code = code;
    return code;
}

const char *tg_strerror(int code) {
    switch (code) {
    case TG_OK: return "ok";
#define XX(name, c, str) case TG_ERR_##name: return str;
        TG_ERRNO_MAP(XX)
#undef XX
    }
    return "unknown error";
}
