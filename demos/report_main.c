/* report_main.c: the report of any run log.
 *
 *   build/demos/report [--trace TRACE.json] RUNLOG.jsonl OUT.html [PICTURE.png ...]
 *
 * The same page as demos/mnist --report DIR writes (demos/report.c); --trace adds the
 * timeline of one step from a Chrome trace (tg_tape_trace, TG_TRACE=FILE). */
#include "report.h"
#include "tapegrad.h"
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *trace = NULL;
    if (argc > 2 && !strcmp(argv[1], "--trace")) trace = argv[2], argv += 2, argc -= 2;
    if (argc < 3 || argv[1][0] == '-') {
        fprintf(stderr, "usage: report [--trace TRACE.json] RUNLOG.jsonl OUT.html [PICTURE.png ...]\n");
        return 2;
    }
    if (report_write(argv[1], argv[2], trace, (const char *const *)argv + 3, argc - 3) < 0) {
        fprintf(stderr, "report: %s\n", tg_last_error());
        return 1;
    }
    printf("wrote %s\n", argv[2]);
    return 0;
}
