/* trueno.ops._cfast: the per-call fast path of the ops on one, two or three arrays, in C.

   A FastOp is what `trueno.add`, `trueno.neg`, `trueno.sum` ... are: a callable that makes the
   test trueno/ops/_fast.py describes (exact ndarrays of one native float32/float64 dtype and one
   shape, fewer elements than the live `bound`, more than none where the op refuses empty input,
   then `floats` parameters given as exact Python floats or left to their `defaults`) and then calls numpy's kernel `ref` directly, or `traced` when the
   recorder's ENABLED flag is true; every other call goes to `general`, the op's validated path,
   with its arguments untouched. Python code sees an object with the function's attributes
   (__wrapped__, __name__, __doc__ ... in its __dict__) and a writable `bound`. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *ref;     /* numpy's kernel */
    PyObject *general; /* the op's full path */
    PyObject *traced;  /* ref with a span recorded (tracing on) */
    PyObject *flags;   /* the recorder module's __dict__: flags["ENABLED"] */
    PyObject *dict;    /* __wrapped__, __name__, __doc__ ... */
    Py_ssize_t bound;  /* HOST_MAX of the op's kind, pushed by dispatch */
    Py_ssize_t bound64; /* the same for float64 operands (the op's kind64, else its kind) */
    PyObject *defaults; /* a tuple: the defaults of the last float parameters */
    int arity;          /* 1, 2 or 3 arrays */
    int floats;         /* then this many float parameters (exact Python floats) */
    int min_size;       /* 0, or 1 for an op that refuses empty input */
} FastOp;

#define MAX_ARGS 8

static PyArray_Descr *F32, *F64;
static PyObject *ENABLED; /* interned "ENABLED" */

static inline int
fast_operand(PyObject *a, PyArray_Descr **descr)
{
    if (Py_TYPE(a) != &PyArray_Type)
        return 0;
    PyArray_Descr *d = PyArray_DESCR((PyArrayObject *)a);
    if (d != F32 && d != F64)
        return 0;
    *descr = d;
    return 1;
}

static PyObject *
fastop_vectorcall(PyObject *self_, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FastOp *self = (FastOp *)self_;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t full = self->arity + self->floats;
    Py_ssize_t given = nargs - self->arity; /* float parameters given */
    if (kwnames == NULL && given >= 0 && nargs <= full &&
        nargs + PyTuple_GET_SIZE(self->defaults) >= full) {
        PyArray_Descr *da, *db;
        PyArrayObject *a = (PyArrayObject *)args[0];
        if (fast_operand(args[0], &da)) {
            npy_intp n = PyArray_SIZE(a);
            int ok = n < (da == F64 ? self->bound64 : self->bound) && n >= self->min_size;
            for (Py_ssize_t i = 1; ok && i < self->arity; i++) {
                PyArrayObject *b = (PyArrayObject *)args[i];
                int nd = PyArray_NDIM(a);
                ok = fast_operand(args[i], &db) && db == da && PyArray_NDIM(b) == nd &&
                     memcmp(PyArray_DIMS(a), PyArray_DIMS(b), nd * sizeof(npy_intp)) == 0;
            }
            for (Py_ssize_t i = self->arity; ok && i < nargs; i++)
                ok = PyFloat_CheckExact(args[i]);
            if (ok) {
                PyObject *on = PyDict_GetItemWithError(self->flags, ENABLED); /* borrowed */
                if (on == NULL && PyErr_Occurred())
                    return NULL;
                PyObject *fn = on == Py_True ? self->traced : self->ref;
                if (nargs == full)
                    return PyObject_Vectorcall(fn, args, nargs, NULL);
                /* the missing float parameters take their defaults */
                PyObject *buf[MAX_ARGS];
                Py_ssize_t skip = PyTuple_GET_SIZE(self->defaults) - (full - nargs);
                for (Py_ssize_t i = 0; i < nargs; i++)
                    buf[i] = args[i];
                for (Py_ssize_t i = nargs; i < full; i++)
                    buf[i] = PyTuple_GET_ITEM(self->defaults, skip + i - nargs);
                return PyObject_Vectorcall(fn, buf, full, NULL);
            }
        }
    }
    return PyObject_Vectorcall(self->general, args, nargsf, kwnames);
}

static PyObject *
fastop_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"ref",      "general", "traced",   "flags", "arity",
                             "empty_ok", "floats",  "defaults", NULL};
    PyObject *ref, *general, *traced, *flags, *defaults = NULL;
    int arity, empty_ok = 1, floats = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO!i|piO!", kwlist, &ref, &general, &traced,
                                     &PyDict_Type, &flags, &arity, &empty_ok, &floats,
                                     &PyTuple_Type, &defaults))
        return NULL;
    Py_ssize_t ndefaults = defaults ? PyTuple_GET_SIZE(defaults) : 0;
    if (arity < 1 || arity > 3 || floats < 0 || floats > MAX_ARGS - arity ||
        ndefaults > floats) {
        PyErr_SetString(PyExc_ValueError,
                        "FastOp: 1 to 3 arrays, at most 5 floats, no more defaults than floats");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < ndefaults; i++) {
        if (!PyFloat_CheckExact(PyTuple_GET_ITEM(defaults, i))) {
            PyErr_SetString(PyExc_TypeError, "FastOp: defaults must be floats");
            return NULL;
        }
    }
    FastOp *self = (FastOp *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = fastop_vectorcall;
    Py_INCREF(ref), self->ref = ref;
    Py_INCREF(general), self->general = general;
    Py_INCREF(traced), self->traced = traced;
    Py_INCREF(flags), self->flags = flags;
    self->defaults = defaults ? Py_NewRef(defaults) : PyTuple_New(0);
    if (self->defaults == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->dict = NULL;
    self->bound = 0;
    self->bound64 = 0;
    self->arity = arity;
    self->floats = floats;
    self->min_size = empty_ok ? 0 : 1;
    return (PyObject *)self;
}

static int
fastop_traverse(FastOp *self, visitproc visit, void *arg)
{
    Py_VISIT(self->ref);
    Py_VISIT(self->general);
    Py_VISIT(self->traced);
    Py_VISIT(self->flags);
    Py_VISIT(self->dict);
    Py_VISIT(self->defaults);
    return 0;
}

static int
fastop_clear(FastOp *self)
{
    Py_CLEAR(self->ref);
    Py_CLEAR(self->general);
    Py_CLEAR(self->traced);
    Py_CLEAR(self->flags);
    Py_CLEAR(self->dict);
    Py_CLEAR(self->defaults);
    return 0;
}

static void
fastop_dealloc(FastOp *self)
{
    PyObject_GC_UnTrack(self);
    fastop_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
fastop_get(PyObject *self, PyObject *obj, PyObject *type)
{
    /* a plain function, not a method: stored on a class it stays unbound (like staticmethod) */
    Py_INCREF(self);
    return self;
}

static PyObject *
fastop_repr(FastOp *self)
{
    PyObject *name = self->dict ? PyDict_GetItemString(self->dict, "__qualname__") : NULL;
    if (name)
        return PyUnicode_FromFormat("<trueno op %U>", name);
    return PyUnicode_FromString("<trueno op>");
}

static PyObject *
fastop_reduce(FastOp *self, PyObject *Py_UNUSED(ignored))
{
    /* pickled by name, like a function: pickle finds it again as __module__.__qualname__ */
    PyObject *name = self->dict ? PyDict_GetItemString(self->dict, "__qualname__") : NULL;
    if (name == NULL) {
        PyErr_SetString(PyExc_TypeError, "FastOp: cannot pickle an op without __qualname__");
        return NULL;
    }
    Py_INCREF(name);
    return name;
}

static PyMethodDef fastop_methods[] = {
    {"__reduce__", (PyCFunction)fastop_reduce, METH_NOARGS, "pickle by qualified name"},
    {NULL},
};

static PyMemberDef fastop_members[] = {
    {"bound", T_PYSSIZET, offsetof(FastOp, bound), 0, "live HOST_MAX of the op's kind"},
    {"bound64", T_PYSSIZET, offsetof(FastOp, bound64), 0,
     "live HOST_MAX of the op's kind for float64 operands"},
    {"ref", T_OBJECT, offsetof(FastOp, ref), READONLY, "numpy's kernel"},
    {"general", T_OBJECT, offsetof(FastOp, general), READONLY, "the op's full path"},
    {"__dictoffset__", T_PYSSIZET, offsetof(FastOp, dict), READONLY},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(FastOp, vectorcall), READONLY},
    {NULL},
};

static PyGetSetDef fastop_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict},
    {NULL},
};

static PyTypeObject FastOpType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "trueno.ops._cfast.FastOp",
    .tp_basicsize = sizeof(FastOp),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "An op function with its common call decided in C (see trueno/ops/_fast.py).",
    .tp_new = fastop_new,
    .tp_dealloc = (destructor)fastop_dealloc,
    .tp_traverse = (traverseproc)fastop_traverse,
    .tp_clear = (inquiry)fastop_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(FastOp, vectorcall),
    .tp_dictoffset = offsetof(FastOp, dict),
    .tp_descr_get = fastop_get,
    .tp_repr = (reprfunc)fastop_repr,
    .tp_methods = fastop_methods,
    .tp_members = fastop_members,
    .tp_getset = fastop_getset,
};

static struct PyModuleDef cfast_module = {
    PyModuleDef_HEAD_INIT, "_cfast", "The per-call fast path of trueno's array ops, in C.", -1,
};

PyMODINIT_FUNC
PyInit__cfast(void)
{
    import_array();
    F32 = PyArray_DescrFromType(NPY_FLOAT32); /* new references, kept for the process */
    F64 = PyArray_DescrFromType(NPY_FLOAT64);
    ENABLED = PyUnicode_InternFromString("ENABLED");
    if (F32 == NULL || F64 == NULL || ENABLED == NULL)
        return NULL;
    if (PyType_Ready(&FastOpType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&cfast_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FastOpType);
    if (PyModule_AddObject(m, "FastOp", (PyObject *)&FastOpType) < 0) {
        Py_DECREF(&FastOpType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
