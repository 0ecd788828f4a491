/* report.h: a training run as one HTML page a person opens in any browser:
 * made from the run log (tg_runlog's JSON lines) and the run's pictures, with
 * everything inline (SVG drawn here, PNGs as data: URIs), so the file works
 * offline, attached to a mail, or archived beside a checkpoint. */
#ifndef DEMO_REPORT_H
#define DEMO_REPORT_H

/* Reads the run log at runlog and writes html: the diagnosis (the log's
 * findings) first, then the run's settings, the curves (loss, accuracy,
 * learning rate, per-layer update ratios, |dy| and dead units over time), the
 * histograms of the last histogram step, the graph of the last logged step
 * coloured by time and by |dy|, the timeline of one step from trace (Chrome
 * trace-event JSON as tg_tape_trace writes it; NULL: no timeline; one that
 * cannot be read is named in a note), and the n pictures (PNG files; a missing
 * one is named in the page). Returns 0, or a negative TG_ERR_* with
 * tg_last_error() set (an unreadable log, an unwritable html). */
int report_write(const char *runlog, const char *html, const char *trace, const char *const *pictures, int n);

#endif
