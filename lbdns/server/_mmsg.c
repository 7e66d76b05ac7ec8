/* lbdns.server._mmsg — the UDP batch loop of lbdns.server.udp_batch, in C.
 *
 * One call of Batch.serve() reads up to `n` datagrams with one recvmmsg(2), hands each to the
 * Python query handler, and sends the answers with one sendmmsg(2), repeated while batches come
 * back full (at most `rounds` times). Everything DNS is done by the Python handler; this file
 * only moves datagrams, so that a query costs one handler call and no per-datagram Python
 * bytecode around it (docs/architecture.md › One query).
 *
 * Memory, allocated once per listener: `n` read slots of 65,536 octets in one anonymous map
 * (a slot holds the largest UDP payload, so nothing is truncated; the kernel touches pages only
 * as far as datagrams reach), `n` sender addresses and the message headers. Answers are sent
 * from the handler's own bytes objects (held until sendmmsg returns), never copied.
 *
 * Send failures: sendmmsg stops at the first message it cannot send. A message refused for its
 * own reason (EPERM from a firewall, an unreachable address) is skipped and the rest sent; a
 * full socket buffer (EAGAIN, ENOBUFS) drops the rest of the batch, as a UDP answer lost on the
 * wire would be (RFC 1035 §4.2.1: the client retries). serve() returns how many were not sent.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef __linux__

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define SLOT 65536

typedef struct {
    PyObject_HEAD
    int fd;
    unsigned int n;
    char *rbuf;
    size_t rbuf_len;
    struct sockaddr_storage *names;
    struct mmsghdr *rh;
    struct mmsghdr *wh;
    struct iovec *riov;
    struct iovec *wiov;
    PyObject **outs;
} Batch;

static void
Batch_free_buffers(Batch *self)
{
    if (self->rbuf != NULL && self->rbuf != MAP_FAILED) {
        munmap(self->rbuf, self->rbuf_len);
    }
    self->rbuf = NULL;
    PyMem_Free(self->names);
    PyMem_Free(self->rh);
    PyMem_Free(self->wh);
    PyMem_Free(self->riov);
    PyMem_Free(self->wiov);
    PyMem_Free(self->outs);
    self->names = NULL;
    self->rh = self->wh = NULL;
    self->riov = self->wiov = NULL;
    self->outs = NULL;
}

static int
Batch_init(Batch *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "n", NULL};
    int fd;
    unsigned int n;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iI", kwlist, &fd, &n)) {
        return -1;
    }
    if (fd < 0 || n < 1 || n > 1024) {
        PyErr_SetString(PyExc_ValueError, "fd must be >= 0 and n in 1..1024");
        return -1;
    }
    Batch_free_buffers(self);
    self->fd = fd;
    self->n = n;
    self->rbuf_len = (size_t)n * SLOT;
    self->rbuf = mmap(NULL, self->rbuf_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (self->rbuf == MAP_FAILED) {
        self->rbuf = NULL;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->names = PyMem_Calloc(n, sizeof(struct sockaddr_storage));
    self->rh = PyMem_Calloc(n, sizeof(struct mmsghdr));
    self->wh = PyMem_Calloc(n, sizeof(struct mmsghdr));
    self->riov = PyMem_Calloc(n, sizeof(struct iovec));
    self->wiov = PyMem_Calloc(n, sizeof(struct iovec));
    self->outs = PyMem_Calloc(n, sizeof(PyObject *));
    if (!self->names || !self->rh || !self->wh || !self->riov || !self->wiov || !self->outs) {
        Batch_free_buffers(self);
        PyErr_NoMemory();
        return -1;
    }
    for (unsigned int i = 0; i < n; i++) {
        self->riov[i].iov_base = self->rbuf + (size_t)i * SLOT;
        self->riov[i].iov_len = SLOT;
        self->rh[i].msg_hdr.msg_name = &self->names[i];
        self->rh[i].msg_hdr.msg_iov = &self->riov[i];
        self->rh[i].msg_hdr.msg_iovlen = 1;
        self->wh[i].msg_hdr.msg_iov = &self->wiov[i];
        self->wh[i].msg_hdr.msg_iovlen = 1;
    }
    return 0;
}

static void
Batch_dealloc(Batch *self)
{
    Batch_free_buffers(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The sender address of read slot i as a bytes key (4 or 16 octets), or NULL with an error. */
static PyObject *
peer_key(Batch *self, unsigned int i)
{
    const struct sockaddr_storage *sa = &self->names[i];
    if (sa->ss_family == AF_INET) {
        return PyBytes_FromStringAndSize((const char *)&((const struct sockaddr_in *)sa)->sin_addr, 4);
    }
    if (sa->ss_family == AF_INET6) {
        return PyBytes_FromStringAndSize((const char *)&((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
    PyErr_SetString(PyExc_OSError, "datagram from an address that is neither IPv4 nor IPv6");
    return NULL;
}

/* The answer to read slot i (a new reference: bytes to send, or None), or NULL after reporting
 * an exception of the handler as unraisable (the handler is meant never to raise). */
static PyObject *
answer_one(Batch *self, unsigned int i, PyObject *handle, PyObject *pop, PyObject *filter, PyObject *peers,
           PyObject *peer_of)
{
    PyObject *key = peer_key(self, i);
    if (key == NULL) {
        PyErr_WriteUnraisable(handle);
        return NULL;
    }
    PyObject *peer = PyDict_GetItemWithError(peers, key);
    if (peer != NULL) {
        Py_INCREF(peer);
    } else if (!PyErr_Occurred()) {
        peer = PyObject_CallOneArg(peer_of, key);
    }
    Py_DECREF(key);
    if (peer == NULL) {
        PyErr_WriteUnraisable(peer_of);
        return NULL;
    }
    PyObject *data = PyBytes_FromStringAndSize(self->rbuf + (size_t)i * SLOT, self->rh[i].msg_len);
    if (data == NULL) {
        Py_DECREF(peer);
        PyErr_WriteUnraisable(handle);
        return NULL;
    }
    PyObject *argv[4] = {data, peer, Py_False, pop};
    PyObject *out = PyObject_Vectorcall(handle, argv, 4, NULL);
    if (out == NULL) {
        PyErr_WriteUnraisable(handle);
    } else if (out != Py_None && filter != Py_None) {
        PyObject *fargv[3] = {peer, data, out};
        PyObject *kept = PyObject_Vectorcall(filter, fargv, 3, NULL);
        Py_DECREF(out);
        out = kept;
        if (out == NULL) {
            PyErr_WriteUnraisable(filter);
        }
    }
    Py_DECREF(data);
    Py_DECREF(peer);
    return out;
}

/* sendmmsg the first `count` prepared answers; returns how many were not sent. */
static unsigned long
send_all(Batch *self, unsigned int count)
{
    unsigned int sent = 0;
    unsigned long failed = 0;
    while (sent < count) {
        int r, err;
        Py_BEGIN_ALLOW_THREADS
        r = sendmmsg(self->fd, self->wh + sent, count - sent, 0);
        err = errno;
        Py_END_ALLOW_THREADS
        if (r > 0) {
            sent += (unsigned int)r;
        } else if (r < 0 && err == EINTR) {
            continue;
        } else if (r < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS)) {
            failed += count - sent;
            break;
        } else {
            failed += 1; /* this destination refused: skip it, send the rest */
            sent += 1;
        }
    }
    return failed;
}

PyDoc_STRVAR(Batch_serve_doc,
"serve(handle, pop, filter, peers, peer_of, rounds) -> int\n\n"
"Read and answer batches until one comes back short of n datagrams, at most `rounds` batches.\n"
"handle(data, peer, False, pop) gives the answer bytes or None (drop); filter(peer, data, answer)\n"
"(None: no filter) the datagram to send or None. peers maps the sender's packed address (4 or 16\n"
"octets) to its text; peer_of(packed) gives the text of one not in it. Returns the answers\n"
"that could not be sent. Exceptions from the callables are reported as unraisable and that\n"
"datagram is dropped.");

static PyObject *
Batch_serve(Batch *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "serve() takes 6 arguments");
        return NULL;
    }
    PyObject *handle = args[0], *pop = args[1], *filter = args[2], *peers = args[3], *peer_of = args[4];
    long rounds = PyLong_AsLong(args[5]);
    if (rounds == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyDict_Check(peers)) {
        PyErr_SetString(PyExc_TypeError, "peers must be a dict");
        return NULL;
    }
    if (self->rbuf == NULL) {
        PyErr_SetString(PyExc_ValueError, "Batch not initialised");
        return NULL;
    }
    unsigned long failed = 0;
    for (long round = 0; round < rounds; round++) {
        for (unsigned int i = 0; i < self->n; i++) {
            self->rh[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        }
        int got;
        Py_BEGIN_ALLOW_THREADS
        got = recvmmsg(self->fd, self->rh, self->n, MSG_DONTWAIT, NULL);
        Py_END_ALLOW_THREADS
        if (got <= 0) {
            break; /* nothing queued (EAGAIN), or an error the next wake-up meets again */
        }
        unsigned int out_n = 0;
        for (unsigned int i = 0; i < (unsigned int)got; i++) {
            PyObject *out = answer_one(self, i, handle, pop, filter, peers, peer_of);
            if (out == NULL) {
                continue;
            }
            if (!PyBytes_CheckExact(out)) {
                Py_DECREF(out);
                continue;
            }
            struct msghdr *m = &self->wh[out_n].msg_hdr;
            m->msg_name = &self->names[i];
            m->msg_namelen = self->rh[i].msg_hdr.msg_namelen;
            self->wiov[out_n].iov_base = PyBytes_AS_STRING(out);
            self->wiov[out_n].iov_len = (size_t)PyBytes_GET_SIZE(out);
            self->outs[out_n++] = out;
        }
        failed += send_all(self, out_n);
        for (unsigned int k = 0; k < out_n; k++) {
            Py_CLEAR(self->outs[k]);
        }
        if ((unsigned int)got < self->n) {
            break;
        }
    }
    return PyLong_FromUnsignedLong(failed);
}

static PyMethodDef Batch_methods[] = {
    {"serve", (PyCFunction)(void (*)(void))Batch_serve, METH_FASTCALL, Batch_serve_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(Batch_doc,
"Batch(fd, n)\n\n"
"The recvmmsg/sendmmsg buffers of one UDP socket `fd` (non-blocking, owned by the caller) for up\n"
"to n (1..1024) datagrams per system call.");

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lbdns.server._mmsg.Batch",
    .tp_basicsize = sizeof(Batch),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Batch_doc,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Batch_init,
    .tp_dealloc = (destructor)Batch_dealloc,
    .tp_methods = Batch_methods,
};

#endif /* __linux__ */

static struct PyModuleDef mmsg_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lbdns.server._mmsg",
    .m_doc = "recvmmsg/sendmmsg batch loop of lbdns' UDP listeners (Linux).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__mmsg(void)
{
#ifdef __linux__
    if (PyType_Ready(&BatchType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&mmsg_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&BatchType);
    if (PyModule_AddObject(m, "Batch", (PyObject *)&BatchType) < 0) {
        Py_DECREF(&BatchType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
#else
    PyErr_SetString(PyExc_ImportError, "recvmmsg/sendmmsg are Linux system calls");
    return NULL;
#endif
}
