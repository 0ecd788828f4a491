/* eval.c: what a trained model is judged by: argmax, accuracy, loss and the
 * confusion matrix over a dataset. */
#include "nn_internal.h"
#include <math.h>
#include <string.h>

int tg_argmax(const tg_tensor *x, int32_t *out) {
    if (!x || !out) return tg_fail(TG_ERR_ARG, "argmax: %s is NULL", !x ? "tensor" : "out");
    if (x->ndim < 1 || !x->data || x->size == 0)
        return tg_fail(TG_ERR_ARG, "argmax: the tensor needs a first dimension and data");
    int n = x->shape[0];
    int64_t c = x->size / n;
    if (c > INT32_MAX) return tg_fail(TG_ERR_ARG, "argmax: %lld values per sample", (long long)c);
    for (int i = 0; i < n; i++) {
        const float *row = x->data + (int64_t)i * c;
        int64_t best = 0;
        for (int64_t j = 1; j < c && !isnan(row[best]); j++) /* the first NaN wins, as torch.argmax */
            if (isnan(row[j]) || row[j] > row[best]) best = j;
        out[i] = (int32_t)best;
    }
    return n;
}

int tg_model_evaluate(tg_model *m, const tg_dataset *ds, int batch, tg_eval *e) {
    if (!m || !ds || !e) return tg_fail(TG_ERR_ARG, "model_evaluate: %s is NULL", !m ? "model" : !ds ? "dataset" : "e");
    int64_t *confusion = e->confusion;
    int classes = e->classes;
    e->n = e->correct = 0, e->accuracy = e->loss = 0;
    if (batch < 1 || ds->n < 1 || (confusion && classes < 1))
        return tg_fail(TG_ERR_ARG, "model_evaluate: batch %d, %d samples%s: need at least one of each", batch, ds->n,
                       confusion && classes < 1 ? ", and a confusion matrix of at least 1 class" : "");
    if (batch > ds->n) batch = ds->n;
    tg_tape *t = tg_tape_new();
    int32_t *labels = tg__malloc((size_t)batch * sizeof *labels), *pred = tg__malloc((size_t)batch * sizeof *pred);
    if (!t || !labels || !pred) {
        tg_tape_free(t), tg__free(labels), tg__free(pred);
        return tg_fail(TG_ERR_NOMEM, "model_evaluate: out of memory");
    }
    if (confusion) memset(confusion, 0, (size_t)classes * (size_t)classes * sizeof *confusion);
    tg_tape_set_grad_enabled(t, false);
    bool was = tg__model_evaluating(m, true);
    double loss = 0;
    int64_t correct = 0;
    int rc = 0;
    for (int start = 0; start < ds->n && !rc; start += batch) {
        int b = ds->n - start < batch ? ds->n - start : batch;
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){b, 1, ds->h, ds->w});
        tg_tensor *logits = x && tg_dataset_batch(ds, NULL, start, x, labels) == b ? tg_model_forward(m, t, x) : NULL;
        tg_tensor *ce = logits ? tg_cross_entropy(t, logits, labels) : NULL;
        if (ce && confusion && (logits->ndim != 2 || logits->shape[1] != classes))
            ce = NULL, tg_fail(TG_ERR_SHAPE, "the model gives %lld outputs per sample, the confusion matrix has %d classes",
                               (long long)(logits->size / b), classes);
        if (!ce || tg_argmax(logits, pred) < 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", tg_last_error());
            rc = tg_fail(tg_last_error_code() ? tg_last_error_code() : TG_ERR_ARG,
                         "model_evaluate: the batch of samples %d to %d: %s", start, start + b - 1, msg);
            break;
        }
        loss += (double)ce->data[0] * b;
        if (e->pred) memcpy(e->pred + start, pred, (size_t)b * sizeof *pred);
        for (int i = 0; i < b; i++) {
            correct += pred[i] == labels[i];
            if (confusion) confusion[(int64_t)labels[i] * classes + pred[i]]++;
        }
        tg_tape_reset(t);
    }
    tg__model_evaluating(m, was);
    tg_tape_free(t), tg__free(labels), tg__free(pred);
    if (rc) return rc;
    e->n = ds->n;
    e->correct = correct;
    e->accuracy = (double)correct / (double)ds->n;
    e->loss = loss / (double)ds->n;
    return 0;
}
