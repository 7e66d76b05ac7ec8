/* lbdns.wire._scan — scan(data): the C twin of lbdns.wire.scan.scan_py (read that docstring for
 * the contract; tests hold both to the same result for any input bytes).
 *
 * One pass over a query for the serving plan: header, question name (lower-cased), at most one
 * OPT record of version 0 with at most one ECS and one COOKIE option (RFC 1035 §4.1.1,
 * RFC 6891 §6.1.2, RFC 7871 §6, RFC 7873 §4). Every read is bounds-checked against the
 * length of `data`; nothing is written but the new objects returned.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *
scan(PyObject *module, PyObject *arg)
{
    (void)module;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "scan() takes bytes");
        return NULL;
    }
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(arg);
    const Py_ssize_t n = PyBytes_GET_SIZE(arg);
    static const unsigned char question_only[7] = {0, 1, 0, 0, 0, 0, 0};
    if (n < 17 || (d[2] & 0xF8) || memcmp(d + 4, question_only, 7) != 0) {
        Py_RETURN_NONE;
    }
    /* the name: labels of 1..63 octets up to the root, 255 octets at most */
    Py_ssize_t i = 12;
    int upper = 0;
    for (;;) {
        if (i >= n) {
            Py_RETURN_NONE;
        }
        const unsigned int len = d[i];
        if (len == 0) {
            break;
        }
        if (len > 63 || i + (Py_ssize_t)len - 10 > 255 || i + (Py_ssize_t)len >= n) {
            Py_RETURN_NONE;
        }
        for (Py_ssize_t k = i + 1; k <= i + (Py_ssize_t)len; k++) {
            upper |= (d[k] >= 'A' && d[k] <= 'Z');
        }
        i += (Py_ssize_t)len + 1;
    }
    const Py_ssize_t end = i;
    const Py_ssize_t qend = end + 5;
    if (qend > n) {
        Py_RETURN_NONE;
    }
    const unsigned int ar = d[11];
    Py_ssize_t ecs_at = -1, cookie_at = -1;
    long payload = 0, dobit = 0, source = -1, width = 0;
    if (ar == 0) {
        if (n != qend) {
            Py_RETURN_NONE;
        }
    } else if (ar == 1) {
        if (n < qend + 11 || d[qend] != 0 || d[qend + 1] != 0 || d[qend + 2] != 0x29 || d[qend + 6] != 0) {
            Py_RETURN_NONE; /* not a root-owned OPT of EDNS version 0 */
        }
        if (qend + 11 + ((Py_ssize_t)d[qend + 9] << 8 | d[qend + 10]) != n) {
            Py_RETURN_NONE;
        }
        payload = (long)d[qend + 3] << 8 | d[qend + 4];
        dobit = d[qend + 7] >> 7;
        Py_ssize_t pos = qend + 11;
        while (pos < n) {
            if (pos + 4 > n) {
                Py_RETURN_NONE;
            }
            const unsigned int code = (unsigned int)d[pos] << 8 | d[pos + 1];
            const Py_ssize_t oend = pos + 4 + ((Py_ssize_t)d[pos + 2] << 8 | d[pos + 3]);
            if (oend > n) {
                Py_RETURN_NONE;
            }
            if (code == 8 && ecs_at < 0) {
                ecs_at = pos;
            } else if (code == 10 && cookie_at < 0 && (oend - pos == 12 || (oend - pos >= 20 && oend - pos <= 44))) {
                cookie_at = pos + 4;
            } else {
                Py_RETURN_NONE; /* NSID, padding, unknown or repeated options */
            }
            pos = oend;
        }
        if (ecs_at >= 0) {
            const Py_ssize_t olen = (Py_ssize_t)d[ecs_at + 2] << 8 | d[ecs_at + 3];
            if (olen < 4) {
                Py_RETURN_NONE;
            }
            const unsigned int family = (unsigned int)d[ecs_at + 4] << 8 | d[ecs_at + 5];
            source = d[ecs_at + 6];
            width = family == 1 ? 4 : family == 2 ? 16 : 0;
            const Py_ssize_t alen = olen - 4;
            if (!width || source > width * 8 || d[ecs_at + 7] || alen != (source + 7) >> 3
                || ((source & 7) && (d[ecs_at + 8 + alen - 1] & (0xFF >> (source & 7))))) {
                Py_RETURN_NONE;
            }
        }
    } else {
        Py_RETURN_NONE;
    }
    /* key: the name lower-cased + QTYPE + QCLASS; low: the query after the ID, name lower-cased */
    const Py_ssize_t nlen = end + 1 - 12;
    PyObject *key = PyBytes_FromStringAndSize(NULL, nlen + 4);
    if (key == NULL) {
        return NULL;
    }
    unsigned char *k = (unsigned char *)PyBytes_AS_STRING(key);
    for (Py_ssize_t j = 0; j < nlen; j++) {
        const unsigned char c = d[12 + j];
        k[j] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
    }
    memcpy(k + nlen, d + end + 1, 4);
    PyObject *low;
    if (upper) {
        low = PyBytes_FromStringAndSize(NULL, n - 2);
        if (low == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        unsigned char *l = (unsigned char *)PyBytes_AS_STRING(low);
        memcpy(l, d + 2, 10);
        memcpy(l + 10, k, (size_t)nlen);
        memcpy(l + 10 + nlen, d + end + 1, (size_t)(n - end - 1));
    } else {
        low = Py_None;
        Py_INCREF(low);
    }
    PyObject *cookie = cookie_at >= 0 ? PyBytes_FromStringAndSize((const char *)d + cookie_at, 8)
                                      : PyBytes_FromStringAndSize(NULL, 0);
    if (cookie == NULL) {
        Py_DECREF(key);
        Py_DECREF(low);
        return NULL;
    }
    PyObject *out = PyTuple_New(10);
    if (out == NULL) {
        Py_DECREF(key);
        Py_DECREF(low);
        Py_DECREF(cookie);
        return NULL;
    }
    const long ints[7] = {(long)ar, payload, dobit, (long)ecs_at, source, width, (long)qend};
    PyObject *vals[7];
    for (int j = 0; j < 7; j++) {
        vals[j] = PyLong_FromLong(ints[j]);
        if (vals[j] == NULL) {
            for (int m = 0; m < j; m++) {
                Py_DECREF(vals[m]);
            }
            Py_DECREF(key);
            Py_DECREF(low);
            Py_DECREF(cookie);
            Py_DECREF(out);
            return NULL;
        }
    }
    PyTuple_SET_ITEM(out, 0, vals[6]);
    PyTuple_SET_ITEM(out, 1, key);
    PyTuple_SET_ITEM(out, 2, low);
    for (int j = 0; j < 6; j++) {
        PyTuple_SET_ITEM(out, 3 + j, vals[j]);
    }
    PyTuple_SET_ITEM(out, 9, cookie);
    return out;
}

static PyMethodDef scan_methods[] = {
    {"scan", scan, METH_O,
     "scan(data) -> tuple | None: the query read for the serving plan (see lbdns.wire.scan.scan_py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef scan_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lbdns.wire._scan",
    .m_doc = "C twin of lbdns.wire.scan.scan_py.",
    .m_size = -1,
    .m_methods = scan_methods,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModule_Create(&scan_module);
}
