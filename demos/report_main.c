/* report_main.c: the report of any run log.
 *
 *   build/demos/report RUNLOG.jsonl OUT.html [PICTURE.png ...]
 *
 * The same page as demos/mnist --report DIR writes (demos/report.c). */
#include "report.h"
#include "tapegrad.h"
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: report RUNLOG.jsonl OUT.html [PICTURE.png ...]\n");
        return 2;
    }
    if (report_write(argv[1], argv[2], (const char *const *)argv + 3, argc - 3) < 0) {
        fprintf(stderr, "report: %s\n", tg_last_error());
        return 1;
    }
    printf("wrote %s\n", argv[2]);
    return 0;
}
