/* trueno.trace._rows: a thread's unflushed span rows as int64 (see trueno/trace/recorder.py).
 *
 * A traced op appends one row of WIDTH ints in one C call. Kept as Python ints in a list, a
 * row cost a list append and, at each flush, a conversion of its seven ints by np.fromiter:
 * about 240 ns of a span's cost on a Zen 4 host (the conversion alone 140 ns). Here a row is
 * converted as it is added and a flush copies the bytes.
 *
 *     rows = Rows(capacity)          # capacity rows of WIDTH int64
 *     full = rows.add(id, parent, key, start_ns, dur_ns, nbytes, flops)   # True when full
 *     raw = rows.take()              # the rows added so far as bytes; the buffer is emptied
 *     len(rows)                      # rows held
 *     next_id()                      # a fresh span id (1, 2, ...; process-wide)
 *
 * ``id`` 0 takes a fresh id; ``parent`` is an int, or a list, the thread's stack of open
 * spans: its last item is the parent (0 when empty). The span's own Python code then does
 * neither (a span costs less by the bytecode they took).
 *
 * Each call holds the GIL from start to end, so an owner's add and another thread's take
 * (the recorder flushing every thread's rows) never interleave. An add on a full buffer
 * raises (its caller flushes when add returns True); a value that is not an integer in the
 * int64 range raises and leaves the buffer as it was.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define WIDTH 7 /* recorder.INT_FIELDS */

static long long last_id = 0; /* span ids handed out (under the GIL) */

typedef struct {
    PyObject_HEAD
    Py_ssize_t capacity; /* rows */
    Py_ssize_t n;        /* rows held */
    long long *data;
} RowsObject;

static int
rows_init(RowsObject *self, PyObject *args, PyObject *kwds)
{
    Py_ssize_t capacity;
    static char *kwlist[] = {"capacity", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n", kwlist, &capacity))
        return -1;
    if (capacity < 1 || capacity > (PY_SSIZE_T_MAX / WIDTH) / (Py_ssize_t)sizeof(long long)) {
        PyErr_Format(PyExc_ValueError, "a row buffer holds 1 row or more, not %zd", capacity);
        return -1;
    }
    long long *data = PyMem_Calloc((size_t)(capacity * WIDTH), sizeof(long long));
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(self->data);
    self->data = data;
    self->capacity = capacity;
    self->n = 0;
    return 0;
}

static void
rows_dealloc(RowsObject *self)
{
    PyMem_Free(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
rows_add(RowsObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long row[WIDTH];
    if (nargs != WIDTH) {
        PyErr_Format(PyExc_TypeError, "add() takes %d integers, got %zd", WIDTH, nargs);
        return NULL;
    }
    if (self->n >= self->capacity) {
        PyErr_SetString(PyExc_OverflowError, "the row buffer is full: take() its rows first");
        return NULL;
    }
    for (int i = 0; i < WIDTH; i++) {
        PyObject *v = args[i];
        if (i == 1 && PyList_Check(v)) { /* the parent stack */
            Py_ssize_t depth = PyList_GET_SIZE(v);
            if (depth == 0) {
                row[i] = 0;
                continue;
            }
            v = PyList_GET_ITEM(v, depth - 1);
        }
        row[i] = PyLong_AsLongLong(v);
        if (row[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    if (row[0] == 0)
        row[0] = ++last_id;
    memcpy(self->data + self->n * WIDTH, row, sizeof(row));
    self->n++;
    return PyBool_FromLong(self->n >= self->capacity);
}

static PyObject *
rows_take(RowsObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *raw = PyBytes_FromStringAndSize((const char *)self->data,
                                              self->n * WIDTH * (Py_ssize_t)sizeof(long long));
    if (raw != NULL)
        self->n = 0;
    return raw;
}

static PyObject *
next_id(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong(++last_id);
}

static Py_ssize_t
rows_len(RowsObject *self)
{
    return self->n;
}

static PyMethodDef rows_methods[] = {
    {"add", (PyCFunction)(void (*)(void))rows_add, METH_FASTCALL,
     "add(id, parent, key, start_ns, dur_ns, nbytes, flops) -> True when the buffer is full "
     "(id 0: a fresh one; parent: an int, or the list of open spans, whose last is the parent)"},
    {"take", (PyCFunction)rows_take, METH_NOARGS,
     "the rows held, as bytes (native int64, WIDTH a row); the buffer is emptied"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods rows_as_sequence = {
    .sq_length = (lenfunc)rows_len,
};

static PyTypeObject RowsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "trueno.trace._rows.Rows",
    .tp_doc = "Rows(capacity): a thread's unflushed span rows, WIDTH int64 each",
    .tp_basicsize = sizeof(RowsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)rows_init,
    .tp_dealloc = (destructor)rows_dealloc,
    .tp_methods = rows_methods,
    .tp_as_sequence = &rows_as_sequence,
};

static PyMethodDef module_methods[] = {
    {"next_id", (PyCFunction)next_id, METH_NOARGS, "a fresh span id (process-wide)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef rows_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "trueno.trace._rows",
    .m_doc = "A thread's unflushed span rows as int64 (trueno.trace.recorder's hot path).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__rows(void)
{
    if (PyType_Ready(&RowsType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&rows_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "WIDTH", WIDTH) < 0 ||
        PyModule_AddObjectRef(m, "Rows", (PyObject *)&RowsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
