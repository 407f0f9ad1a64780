/*
 * The per-row hot loops of result masking, in C: walk each DataRow's length words (or each text-format
 * COPY line's fields) to the columns a plan names and mask text values in place (same length), or flag the
 * row for the Python path.
 *
 * Why C: at a million rows the Python walk costs ~2.5 us per row, more than PostgreSQL spends producing
 * it. The semantics are those of gateway/masking/rowwalk.py's pure-Python twin, which is the reference:
 * tests/unit/test_masking_rowwalk.py checks the two byte for byte on generated rows, malformed ones included.
 *
 * Every read is bounds-checked against the row's own span; a row that does not parse raises ValueError
 * (the session then ends that connection as a protocol error), never reads outside the buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Operation codes; keep in step with rowwalk.py. */
enum {
    OP_FULL = 1,  /* hide every letter and digit */
    OP_LAST4 = 2, /* keep the last four digits of a PAN-length value */
    OP_BIN6 = 3,  /* keep the first six and last four digits */
    OP_BIN8 = 4,  /* keep the first eight (16-digit values) or six, and the last four */
    OP_INT8 = 5,  /* binary int8: flag the row when the number has 13 digits or more */
    OP_FLAG = 6,    /* flag the row when the value is not NULL */
    OP_NUMERIC = 7, /* binary numeric: flag the row when it is a non-negative number of 13+ digits */
    OP_FLOAT8 = 8,  /* binary float8: flag the row when it is at least 10^12 */
    OP_MAX = 8
};

#define PAN_MIN 13
#define INT8_PAN_MIN 1000000000000LL /* 10^12: the smallest 13-digit number */

typedef struct {
    Py_ssize_t column;
    int op;
} Op;

static inline int32_t read_i32(const unsigned char *p)
{
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3]);
}

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static inline int is_alpha(unsigned char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

/* Mask one text value in place; returns 1 when an eight-digit BIN was kept. */
static int mask_text(unsigned char *v, Py_ssize_t n, int op)
{
    Py_ssize_t i, digits = 0, j = 0, keep_head;
    if (op != OP_FULL) {
        for (i = 0; i < n; i++)
            digits += is_digit(v[i]);
    }
    if (op == OP_FULL || digits < PAN_MIN) {
        for (i = 0; i < n; i++)
            if (is_digit(v[i]) || is_alpha(v[i]))
                v[i] = '*';
        return 0;
    }
    keep_head = op == OP_LAST4 ? 0 : (op == OP_BIN8 && digits == 16 ? 8 : 6);
    for (i = 0; i < n; i++) {
        unsigned char c = v[i];
        if (is_digit(c)) {
            if (j >= keep_head && j < digits - 4)
                v[i] = '*';
            j++;
        } else if (is_alpha(c)) {
            v[i] = '*';
        }
    }
    return keep_head == 8;
}

static PyObject *malformed(Py_ssize_t row, const char *what)
{
    PyErr_Format(PyExc_ValueError, "DataRow %zd: %s", row, what);
    return NULL;
}

static int parse_ops(PyObject *ops_obj, Op **ops_out, Py_ssize_t *count_out)
{
    PyObject *seq = PySequence_Fast(ops_obj, "ops must be a sequence of (column, op) pairs");
    Py_ssize_t i, count;
    Op *ops;
    if (seq == NULL)
        return -1;
    count = PySequence_Fast_GET_SIZE(seq);
    ops = PyMem_Calloc(count > 0 ? (size_t)count : 1, sizeof(Op));
    if (ops == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        long column, op;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "each op must be a (column, op) tuple");
            goto fail;
        }
        column = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
        op = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
        if (PyErr_Occurred())
            goto fail;
        if (column < 0 || column > 0xFFFF || op < 1 || op > OP_MAX || (i > 0 && column <= ops[i - 1].column)) {
            PyErr_SetString(PyExc_ValueError, "ops: columns 0..65535 in increasing order, known op codes");
            goto fail;
        }
        ops[i].column = column;
        ops[i].op = (int)op;
    }
    Py_DECREF(seq);
    *ops_out = ops;
    *count_out = count;
    return 0;
fail:
    Py_DECREF(seq);
    PyMem_Free(ops);
    return -1;
}

/* One row: apply the ops; 1 when the row must go to the Python path, 0 when done, -1 on error. */
static int walk_row(unsigned char *buf, Py_ssize_t s, Py_ssize_t e, Py_ssize_t row, const Op *ops,
                    Py_ssize_t nops, long long *counts)
{
    Py_ssize_t pos = s + 7, col = 0, i, ncols;
    int flag = 0;
    if (e - s < 7) {
        malformed(row, "shorter than its header");
        return -1;
    }
    ncols = ((Py_ssize_t)buf[s + 5] << 8) | buf[s + 6];
    for (i = 0; i < nops; i++) {
        const Op *op = &ops[i];
        int32_t n;
        if (op->column >= ncols) {
            malformed(row, "fewer columns than its RowDescription");
            return -1;
        }
        while (col <= op->column) {
            if (pos + 4 > e) {
                malformed(row, "a length word past the end of the message");
                return -1;
            }
            n = read_i32(buf + pos);
            pos += 4;
            if (n < -1 || (n > 0 && n > e - pos)) {
                malformed(row, "a value length outside the message");
                return -1;
            }
            if (col == op->column && n >= 0) {
                unsigned char *v = buf + pos;
                switch (op->op) {
                case OP_INT8:
                    if (n != 8) {
                        flag = 1;
                    } else {
                        int64_t number = (int64_t)(((uint64_t)(uint32_t)read_i32(v) << 32) | (uint32_t)read_i32(v + 4));
                        flag |= number >= INT8_PAN_MIN;
                    }
                    break;
                case OP_NUMERIC:
                    /* ndigits, weight (a power of 10000), sign, dscale: 13+ integer digits need weight >= 3 */
                    flag |= n < 8 || (v[4] == 0 && v[5] == 0 && (int16_t)((v[2] << 8) | v[3]) >= 3);
                    break;
                case OP_FLOAT8:
                    if (n != 8) {
                        flag = 1;
                    } else {
                        uint64_t bits = ((uint64_t)(uint32_t)read_i32(v) << 32) | (uint32_t)read_i32(v + 4);
                        double number;
                        memcpy(&number, &bits, sizeof number);
                        flag |= isfinite(number) && number >= 1e12;
                    }
                    break;
                case OP_FLAG:
                    flag = 1;
                    break;
                default:
                    counts[2 * i + 1] += mask_text(v, n, op->op);
                    counts[2 * i] += 1;
                }
            }
            if (n > 0)
                pos += n;
            col++;
        }
    }
    return flag;
}

/* One CopyData message of COPY TO in text format: one line, fields split by the delimiter byte (a
 * delimiter inside a value is always escaped, so the split is exact), NULL written as \N. 1: the Python
 * path must take it (not one whole line, another field count, or an op that changes the length). */
static int walk_copy_line(unsigned char *buf, Py_ssize_t s, Py_ssize_t e, unsigned char delimiter,
                          Py_ssize_t ncols, const Op *ops, Py_ssize_t nops, long long *counts)
{
    Py_ssize_t end = e - 1;
    int pass;
    if (e - s < 6 || buf[end] != '\n' || memchr(buf + s + 5, '\n', (size_t)(end - s - 5)) != NULL)
        return 1;
    /* pass 0 checks the field count and that flagging ops meet only NULLs; pass 1 masks */
    for (pass = 0; pass < 2; pass++) {
        Py_ssize_t pos = s + 5, col = 0, i = 0;
        for (;;) {
            unsigned char *stop = memchr(buf + pos, delimiter, (size_t)(end - pos));
            Py_ssize_t fe = stop != NULL ? stop - buf : end;
            if (i < nops && col == ops[i].column) {
                Py_ssize_t n = fe - pos;
                int null = n == 2 && buf[pos] == '\\' && buf[pos + 1] == 'N';
                if (pass == 0 && ops[i].op > OP_BIN8 && !null)
                    return 1;
                if (pass == 1 && !null) {
                    counts[2 * i + 1] += mask_text(buf + pos, n, ops[i].op);
                    counts[2 * i] += 1;
                }
                i++;
            }
            col++;
            if (stop == NULL)
                break;
            pos = fe + 1;
        }
        if (col != ncols)
            return 1;
    }
    return 0;
}

/* What one call walks: DataRows (delimiter unused) or text-format COPY lines. */
typedef struct {
    int copy;
    unsigned char delimiter;
    Py_ssize_t ncols;
} Walk;

/* The loop both entry points share: parse the ops, walk every span, return (counts, flagged). Takes
 * ownership of ``view`` (released here). */
static PyObject *run(Py_buffer *view, PyObject *spans_obj, PyObject *ops_obj, const Walk *walk)
{
    PyObject *spans = NULL, *counts_list = NULL, *flagged = NULL, *result = NULL;
    Op *ops = NULL;
    Py_ssize_t nops = 0, nspans, k, i;
    long long *counts = NULL;
    const char *what = walk->copy ? "CopyData" : "DataRow";

    if (parse_ops(ops_obj, &ops, &nops) < 0)
        goto done;
    if (walk->copy && nops > 0 && ops[nops - 1].column >= walk->ncols) {
        PyErr_SetString(PyExc_ValueError, "ops name a column past ncols");
        goto done;
    }
    spans = PySequence_Fast(spans_obj, "spans must be a sequence of (start, end) pairs");
    if (spans == NULL)
        goto done;
    counts = PyMem_Calloc(2 * (size_t)nops + 1, sizeof(long long));
    flagged = PyList_New(0);
    if (counts == NULL || flagged == NULL) {
        if (counts == NULL)
            PyErr_NoMemory();
        goto done;
    }
    nspans = PySequence_Fast_GET_SIZE(spans);
    for (k = 0; k < nspans; k++) {
        PyObject *span = PySequence_Fast_GET_ITEM(spans, k);
        Py_ssize_t s, e;
        int rc;
        if (!PyTuple_Check(span) || PyTuple_GET_SIZE(span) != 2) {
            PyErr_SetString(PyExc_TypeError, "each span must be a (start, end) tuple");
            goto done;
        }
        s = PyLong_AsSsize_t(PyTuple_GET_ITEM(span, 0));
        e = PyLong_AsSsize_t(PyTuple_GET_ITEM(span, 1));
        if (PyErr_Occurred())
            goto done;
        if (s < 0 || e < s + (walk->copy ? 5 : 0) || e > view->len) {
            PyErr_Format(PyExc_ValueError, "%s %zd: span outside the buffer", what, k);
            goto done;
        }
        if (walk->copy)
            rc = walk_copy_line((unsigned char *)view->buf, s, e, walk->delimiter, walk->ncols, ops, nops, counts);
        else
            rc = walk_row((unsigned char *)view->buf, s, e, k, ops, nops, counts);
        if (rc < 0)
            goto done;
        if (rc > 0) {
            PyObject *index = PyLong_FromSsize_t(k);
            if (index == NULL || PyList_Append(flagged, index) < 0) {
                Py_XDECREF(index);
                goto done;
            }
            Py_DECREF(index);
        }
    }
    counts_list = PyList_New(2 * nops);
    if (counts_list == NULL)
        goto done;
    for (i = 0; i < 2 * nops; i++) {
        PyObject *c = PyLong_FromLongLong(counts[i]);
        if (c == NULL)
            goto done;
        PyList_SET_ITEM(counts_list, i, c);
    }
    result = PyTuple_Pack(2, counts_list, flagged);
done:
    Py_XDECREF(counts_list);
    Py_XDECREF(flagged);
    Py_XDECREF(spans);
    PyMem_Free(counts);
    PyMem_Free(ops);
    PyBuffer_Release(view);
    return result;
}

static PyObject *mask_columns(PyObject *self, PyObject *args)
{
    Py_buffer view;
    PyObject *spans_obj, *ops_obj;
    Walk walk = {0, 0, 0};
    (void)self;
    if (!PyArg_ParseTuple(args, "w*OO:mask_columns", &view, &spans_obj, &ops_obj))
        return NULL;
    return run(&view, spans_obj, ops_obj, &walk);
}

static PyObject *mask_copy_text(PyObject *self, PyObject *args)
{
    Py_buffer view;
    PyObject *spans_obj, *ops_obj;
    int delimiter;
    Walk walk = {1, 0, 0};
    (void)self;
    if (!PyArg_ParseTuple(args, "w*OOin:mask_copy_text", &view, &spans_obj, &ops_obj, &delimiter, &walk.ncols))
        return NULL;
    if (delimiter < 0 || delimiter > 255 || delimiter == '\n' || delimiter == '\\') {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "delimiter must be one byte, not newline or backslash");
        return NULL;
    }
    walk.delimiter = (unsigned char)delimiter;
    return run(&view, spans_obj, ops_obj, &walk);
}

static PyMethodDef methods[] = {
    {"mask_columns", mask_columns, METH_VARARGS,
     "mask_columns(buf, spans, ops) -> (counts, flagged): see gateway/masking/rowwalk.py"},
    {"mask_copy_text", mask_copy_text, METH_VARARGS,
     "mask_copy_text(buf, spans, ops, delimiter, ncols) -> (counts, flagged): see gateway/masking/rowwalk.py"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rowwalk", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__rowwalk(void) { return PyModule_Create(&module); }
