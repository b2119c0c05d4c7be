/* A lineage walk's graph in compiled code: the same interface as provstore.db.lineage_graph.Graph.
 *
 * A deep walk reaches ~30,000 products over ~60,000 links; in Python, the walk's bookkeeping
 * (per-node lists, levels, per-block counts) and naming the result (ranks, sorted edges)
 * take twice as long as the database's own work.  Here nodes are records in one array,
 * found by id in an open-addressing table, and links are node indexes in one array: Python
 * objects are made only for what the walk returns.  provstore.db.lineage_graph documents each
 * method; tests check both versions give the same results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t id;
    int32_t level;    /* -1 until the walk reaches the node */
    int32_t rank;     /* place in digest order, while naming */
    int64_t start;    /* the node's links: adj[start .. start + count) */
    int32_t count;
    int32_t listed;   /* add() call that set the links (0: none yet) */
    int32_t block;    /* index of the node's block record */
    uint8_t known;    /* all its links are here */
} Node;

typedef struct {
    int64_t block;
    int32_t hits;     /* nodes reached in it */
    int32_t entered;  /* level it was first reached at */
    uint8_t known;    /* every node in it is known */
    uint8_t skip;     /* left out by seen_ids(), while it runs */
} Block;

typedef struct {       /* open addressing: int64 key -> int32 index (-1: empty slot) */
    int32_t *slots;
    size_t mask;
    size_t used;
} Table;

typedef struct {
    PyObject_HEAD
    int ancestors;    /* links go child -> parent (else parent -> child) */
    int bits;         /* a block is 2**bits consecutive ids */
    int all_known;
    int rejoined;
    int32_t level;
    int32_t calls;    /* add() calls so far */
    int64_t low, high;
    Node *nodes;
    size_t n_nodes, cap_nodes;
    Table node_table;
    Block *blocks;
    size_t n_blocks, cap_blocks;
    Table block_table;
    int32_t *adj;
    int64_t n_adj, cap_adj;
    int32_t *frontier;
    size_t n_frontier, cap_frontier;
    size_t n_seen;
} Graph;

static inline uint64_t mix(int64_t key) {
    uint64_t z = (uint64_t)key + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int table_init(Table *t, size_t size) {
    t->slots = PyMem_Malloc(size * sizeof(int32_t));
    if (t->slots == NULL) return -1;
    memset(t->slots, 0xff, size * sizeof(int32_t));
    t->mask = size - 1;
    t->used = 0;
    return 0;
}

/* keys: the int64 key of index i is at ((char *)base + i * stride) */
static int table_grow(Table *t, const void *base, size_t stride) {
    size_t size = 2 * (t->mask + 1);
    int32_t *slots = PyMem_Malloc(size * sizeof(int32_t));
    if (slots == NULL) return -1;
    memset(slots, 0xff, size * sizeof(int32_t));
    for (size_t i = 0; i <= t->mask; i++) {
        int32_t at = t->slots[i];
        if (at < 0) continue;
        int64_t key = *(const int64_t *)((const char *)base + (size_t)at * stride);
        size_t j = mix(key) & (size - 1);
        while (slots[j] >= 0) j = (j + 1) & (size - 1);
        slots[j] = at;
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->mask = size - 1;
    return 0;
}

static inline int32_t table_find(const Table *t, const void *base, size_t stride, int64_t key) {
    size_t j = mix(key) & t->mask;
    for (;;) {
        int32_t at = t->slots[j];
        if (at < 0) return -1;
        if (*(const int64_t *)((const char *)base + (size_t)at * stride) == key) return at;
        j = (j + 1) & t->mask;
    }
}

static int32_t block_of(Graph *g, int64_t block, int create) {
    int32_t at = table_find(&g->block_table, g->blocks, sizeof(Block), block);
    if (at >= 0 || !create) return at;
    if (g->n_blocks == g->cap_blocks) {
        size_t cap = g->cap_blocks ? 2 * g->cap_blocks : 64;
        Block *grown = PyMem_Realloc(g->blocks, cap * sizeof(Block));
        if (grown == NULL) { PyErr_NoMemory(); return -2; }
        g->blocks = grown;
        g->cap_blocks = cap;
    }
    if (2 * (g->block_table.used + 1) > g->block_table.mask + 1
        && table_grow(&g->block_table, g->blocks, sizeof(Block)) < 0) {
        PyErr_NoMemory();
        return -2;
    }
    at = (int32_t)g->n_blocks++;
    g->blocks[at] = (Block){block, 0, -1, 0, 0};
    size_t j = mix(block) & g->block_table.mask;
    while (g->block_table.slots[j] >= 0) j = (j + 1) & g->block_table.mask;
    g->block_table.slots[j] = at;
    g->block_table.used++;
    return at;
}

/* The node's index, made when absent; -2 with an exception set on failure. */
static int32_t node_of(Graph *g, int64_t id) {
    int32_t at = table_find(&g->node_table, g->nodes, sizeof(Node), id);
    if (at >= 0) return at;
    if (g->n_nodes >= INT32_MAX - 1) {
        PyErr_SetString(PyExc_OverflowError, "too many nodes for one walk");
        return -2;
    }
    int32_t block = block_of(g, id >> g->bits, 1);
    if (block < 0) return -2;
    if (g->n_nodes == g->cap_nodes) {
        size_t cap = g->cap_nodes ? 2 * g->cap_nodes : 16384;
        Node *grown = PyMem_Realloc(g->nodes, cap * sizeof(Node));
        if (grown == NULL) { PyErr_NoMemory(); return -2; }
        g->nodes = grown;
        g->cap_nodes = cap;
    }
    if (2 * (g->node_table.used + 1) > g->node_table.mask + 1
        && table_grow(&g->node_table, g->nodes, sizeof(Node)) < 0) {
        PyErr_NoMemory();
        return -2;
    }
    at = (int32_t)g->n_nodes++;
    g->nodes[at] = (Node){id, -1, -1, 0, 0, 0, block, 0};
    size_t j = mix(id) & g->node_table.mask;
    while (g->node_table.slots[j] >= 0) j = (j + 1) & g->node_table.mask;
    g->node_table.slots[j] = at;
    g->node_table.used++;
    return at;
}

static int push_frontier(Graph *g, int32_t node) {
    if (g->n_frontier == g->cap_frontier) {
        size_t cap = g->cap_frontier ? 2 * g->cap_frontier : 256;
        int32_t *grown = PyMem_Realloc(g->frontier, cap * sizeof(int32_t));
        if (grown == NULL) { PyErr_NoMemory(); return -1; }
        g->frontier = grown;
        g->cap_frontier = cap;
    }
    g->frontier[g->n_frontier++] = node;
    return 0;
}

/* The walk reaches ``node`` at the current level. */
static void reach(Graph *g, int32_t node) {
    Node *n = &g->nodes[node];
    Block *b = &g->blocks[n->block];
    n->level = g->level;
    g->n_seen++;
    b->hits++;
    if (b->entered < 0) b->entered = g->level;
    if (n->id < g->low) g->low = n->id;
    if (n->id > g->high) g->high = n->id;
}

static inline int is_known(const Graph *g, const Node *n) {
    return g->all_known || n->known || g->blocks[n->block].known;
}

/* The integers of a sequence (a list, a tuple, an array), as a new C array.
 * An array of 64-bit integers is copied as it is: no Python int is made. */
static int64_t *int64s(PyObject *seq, Py_ssize_t *size) {
    if (PyObject_CheckBuffer(seq)) {
        Py_buffer view;
        if (PyObject_GetBuffer(seq, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) == 0) {
            const char *f = view.format ? view.format : "B";
            if (f[0] == '@' || f[0] == '=') f++;
            if (view.itemsize == 8 && (f[0] == 'q' || f[0] == 'l') && f[1] == '\0') {
                Py_ssize_t n = view.len / 8;
                int64_t *out = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int64_t));
                if (out == NULL) { PyBuffer_Release(&view); PyErr_NoMemory(); return NULL; }
                memcpy(out, view.buf, (size_t)n * sizeof(int64_t));
                PyBuffer_Release(&view);
                *size = n;
                return out;
            }
            PyBuffer_Release(&view);
        } else {
            PyErr_Clear();
        }
    }
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of integers");
    if (fast == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    int64_t *out = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (out == NULL) { Py_DECREF(fast); PyErr_NoMemory(); return NULL; }
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        long long value = PyLong_AsLongLong(items[i]);
        if (value == -1 && PyErr_Occurred()) { PyMem_Free(out); Py_DECREF(fast); return NULL; }
        out[i] = value;
    }
    Py_DECREF(fast);
    *size = n;
    return out;
}

/* Sorting tens of thousands of keys: a byte at a time, least significant first (counting
 * sorts), no comparisons and no pointers followed.  ``tmp`` has room for ``n`` items. */
typedef struct {
    uint64_t key;
    int64_t item;
} Keyed;

static void radix_sort(Keyed *items, Keyed *tmp, size_t n, int passes) {
    for (int pass = 0; pass < passes; pass++) {
        size_t counts[257] = {0};
        int shift = 8 * pass;
        for (size_t i = 0; i < n; i++) counts[((items[i].key >> shift) & 0xff) + 1]++;
        if (counts[((items[0].key >> shift) & 0xff) + 1] == n) continue;  /* one value */
        for (int b = 0; b < 256; b++) counts[b + 1] += counts[b];
        for (size_t i = 0; i < n; i++) tmp[counts[(items[i].key >> shift) & 0xff]++] = items[i];
        memcpy(items, tmp, n * sizeof(Keyed));
    }
}

static void radix_sort_u64(uint64_t *keys, uint64_t *tmp, size_t n, int passes) {
    for (int pass = 0; pass < passes; pass++) {
        size_t counts[257] = {0};
        int shift = 8 * pass;
        for (size_t i = 0; i < n; i++) counts[((keys[i] >> shift) & 0xff) + 1]++;
        if (counts[((keys[0] >> shift) & 0xff) + 1] == n) continue;
        for (int b = 0; b < 256; b++) counts[b + 1] += counts[b];
        for (size_t i = 0; i < n; i++) tmp[counts[(keys[i] >> shift) & 0xff]++] = keys[i];
        memcpy(keys, tmp, n * sizeof(uint64_t));
    }
}

static PyObject *int64_array(const int64_t *values, Py_ssize_t n) {
    PyObject *module = PyImport_ImportModule("array");
    if (module == NULL) return NULL;
    PyObject *raw = PyBytes_FromStringAndSize((const char *)values, n * (Py_ssize_t)sizeof(int64_t));
    PyObject *out = raw == NULL ? NULL : PyObject_CallMethod(module, "array", "sO", "q", raw);
    Py_XDECREF(raw);
    Py_DECREF(module);
    return out;
}

/* ints(text): the integers of a comma list ("12,-3,4"; "" is none) as an array('q'). */
static PyObject *ints(PyObject *module, PyObject *arg) {
    const char *text;
    Py_ssize_t size;
    if (PyUnicode_Check(arg)) {
        if (PyUnicode_READY(arg) < 0) return NULL;
        if (PyUnicode_KIND(arg) != PyUnicode_1BYTE_KIND) goto bad;
        text = (const char *)PyUnicode_1BYTE_DATA(arg);
        size = PyUnicode_GET_LENGTH(arg);
    } else if (PyBytes_Check(arg)) {
        text = PyBytes_AS_STRING(arg);
        size = PyBytes_GET_SIZE(arg);
    } else {
        PyErr_SetString(PyExc_TypeError, "ints() takes a str or bytes");
        return NULL;
    }
    Py_ssize_t most = size ? 1 : 0;
    for (Py_ssize_t i = 0; i < size; i++) most += text[i] == ',';
    int64_t *values = PyMem_Malloc((size_t)(most ? most : 1) * sizeof(int64_t));
    if (values == NULL) return PyErr_NoMemory();
    Py_ssize_t n = 0, i = 0;
    while (i < size) {
        int negative = text[i] == '-';
        i += negative;
        uint64_t value = 0, limit = negative ? UINT64_C(9223372036854775808) : INT64_MAX;
        Py_ssize_t digits = 0;
        while (i < size && text[i] >= '0' && text[i] <= '9') {
            uint64_t digit = (uint64_t)(text[i++] - '0');
            if (value > (limit - digit) / 10) goto bad_free;
            value = value * 10 + digit;
            digits++;
        }
        if (digits == 0) goto bad_free;
        values[n++] = negative ? (int64_t)(0 - value) : (int64_t)value;
        if (i < size) {
            if (text[i] != ',' || i + 1 == size) goto bad_free;
            i++;
        }
    }
    PyObject *out = int64_array(values, n);
    PyMem_Free(values);
    return out;
bad_free:
    PyMem_Free(values);
bad:
    PyErr_SetString(PyExc_ValueError, "not a comma list of 64-bit integers");
    return NULL;
}

/* Made whole by ``Graph(root, ancestors, bits)``: no half-made graph can be reached. */
static PyObject *graph_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"root", "ancestors", "bits", NULL};
    long long root;
    int ancestors, bits;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Lpi", names, &root, &ancestors, &bits))
        return NULL;
    if (bits < 0 || bits > 62) {
        PyErr_SetString(PyExc_ValueError, "bits must be within 0..62");
        return NULL;
    }
    Graph *g = (Graph *)type->tp_alloc(type, 0);  /* zeroed */
    if (g == NULL) return NULL;
    g->ancestors = ancestors;
    g->bits = bits;
    g->low = g->high = root;
    if (table_init(&g->node_table, 1 << 16) < 0 || table_init(&g->block_table, 256) < 0) {
        Py_DECREF(g);
        return PyErr_NoMemory();
    }
    int32_t node = node_of(g, root);
    if (node < 0 || push_frontier(g, node) < 0) {
        Py_DECREF(g);
        return NULL;
    }
    reach(g, node);
    return (PyObject *)g;
}

static void graph_dealloc(Graph *g) {
    PyMem_Free(g->nodes);
    PyMem_Free(g->node_table.slots);
    PyMem_Free(g->blocks);
    PyMem_Free(g->block_table.slots);
    PyMem_Free(g->adj);
    PyMem_Free(g->frontier);
    Py_TYPE(g)->tp_free((PyObject *)g);
}

static PyObject *graph_add(Graph *g, PyObject *args) {
    PyObject *src_seq, *dst_seq;
    if (!PyArg_ParseTuple(args, "OO", &src_seq, &dst_seq)) return NULL;
    Py_ssize_t n, m;
    int64_t *srcs = int64s(src_seq, &n);
    if (srcs == NULL) return NULL;
    int64_t *dsts = int64s(dst_seq, &m);
    int32_t *at = NULL, *touched = NULL;
    if (dsts == NULL) goto fail;
    if (n != m) {
        PyErr_SetString(PyExc_ValueError, "as many sources as destinations are needed");
        goto fail;
    }
    at = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    touched = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    if (at == NULL || touched == NULL) { PyErr_NoMemory(); goto fail; }
    int32_t call = ++g->calls;
    Py_ssize_t n_touched = 0, kept = 0;
    int32_t node = -1;
    for (Py_ssize_t i = 0; i < n; i++) {  /* the sources whose links are new: count them */
        if (i == 0 || srcs[i] != srcs[i - 1]) node = node_of(g, srcs[i]);  /* come in runs */
        if (node < 0) goto fail;
        Node *s = &g->nodes[node];
        if (s->listed != 0 && s->listed != call) { at[i] = -1; continue; }
        if (s->listed == 0) { s->listed = call; s->count = 0; touched[n_touched++] = node; }
        s->count++;
        at[i] = node;
        kept++;
    }
    if (g->n_adj + kept > g->cap_adj) {
        int64_t cap = g->cap_adj ? g->cap_adj : 4096;
        while (cap < g->n_adj + kept) cap *= 2;
        int32_t *grown = PyMem_Realloc(g->adj, (size_t)cap * sizeof(int32_t));
        if (grown == NULL) { PyErr_NoMemory(); goto fail; }
        g->adj = grown;
        g->cap_adj = cap;
    }
    for (Py_ssize_t k = 0; k < n_touched; k++) {  /* each source's place, then fill them */
        Node *s = &g->nodes[touched[k]];
        s->start = g->n_adj;
        g->n_adj += s->count;
        s->count = 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (at[i] < 0) continue;
        int32_t dst = node_of(g, dsts[i]);  /* may move g->nodes: index again below */
        if (dst < 0) goto fail;
        Node *s = &g->nodes[at[i]];
        g->adj[s->start + s->count++] = dst;
    }
    PyMem_Free(srcs);
    PyMem_Free(dsts);
    PyMem_Free(at);
    PyMem_Free(touched);
    Py_RETURN_NONE;
fail:
    PyMem_Free(srcs);
    PyMem_Free(dsts);
    PyMem_Free(at);
    PyMem_Free(touched);
    return NULL;
}

static PyObject *graph_mark_nodes(Graph *g, PyObject *seq) {
    Py_ssize_t n;
    int64_t *ids = int64s(seq, &n);
    if (ids == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t node = node_of(g, ids[i]);
        if (node < 0) { PyMem_Free(ids); return NULL; }
        g->nodes[node].known = 1;
    }
    PyMem_Free(ids);
    Py_RETURN_NONE;
}

static PyObject *graph_mark_blocks(Graph *g, PyObject *seq) {
    Py_ssize_t n;
    int64_t *blocks = int64s(seq, &n);
    if (blocks == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t block = block_of(g, blocks[i], 1);
        if (block < 0) { PyMem_Free(blocks); return NULL; }
        g->blocks[block].known = 1;
    }
    PyMem_Free(blocks);
    Py_RETURN_NONE;
}

static PyObject *graph_mark_all(Graph *g, PyObject *unused) {
    g->all_known = 1;
    Py_RETURN_NONE;
}

static PyObject *graph_known(Graph *g, PyObject *arg) {
    long long id = PyLong_AsLongLong(arg);
    if (id == -1 && PyErr_Occurred()) return NULL;
    if (g->all_known) Py_RETURN_TRUE;
    int32_t node = table_find(&g->node_table, g->nodes, sizeof(Node), id);
    if (node >= 0) return PyBool_FromLong(is_known(g, &g->nodes[node]));
    int32_t block = block_of(g, id >> g->bits, 0);
    return PyBool_FromLong(block >= 0 && g->blocks[block].known);
}

static PyObject *ids_list(Graph *g, int32_t *nodes, size_t n, int only_unknown) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (size_t i = 0; i < n; i++) {
        Node *node = &g->nodes[nodes[i]];
        if (only_unknown && is_known(g, node)) continue;
        PyObject *id = PyLong_FromLongLong(node->id);
        if (id == NULL || PyList_Append(out, id) < 0) { Py_XDECREF(id); Py_DECREF(out); return NULL; }
        Py_DECREF(id);
    }
    return out;
}

static PyObject *graph_missing(Graph *g, PyObject *unused) {
    return ids_list(g, g->frontier, g->n_frontier, 1);
}

static PyObject *graph_frontier(Graph *g, PyObject *unused) {
    return ids_list(g, g->frontier, g->n_frontier, 0);
}

static PyObject *graph_advance(Graph *g, PyObject *unused) {
    size_t n = g->n_frontier;
    int32_t *current = g->frontier;
    g->frontier = NULL;
    g->n_frontier = g->cap_frontier = 0;
    g->level++;
    for (size_t i = 0; i < n; i++) {
        Node node = g->nodes[current[i]];
        for (int32_t k = 0; k < (node.listed ? node.count : 0); k++) {
            int32_t other = g->adj[node.start + k];
            if (g->nodes[other].level >= 0) {
                g->rejoined = 1;
            } else {
                reach(g, other);
                if (push_frontier(g, other) < 0) { PyMem_Free(current); return NULL; }
            }
        }
    }
    PyMem_Free(current);
    return PyLong_FromSize_t(g->n_frontier);
}

static Block *find_block(Graph *g, PyObject *arg) {
    long long block = PyLong_AsLongLong(arg);
    if (block == -1 && PyErr_Occurred()) return NULL;
    int32_t at = block_of(g, block, 0);
    return at >= 0 ? &g->blocks[at] : NULL;
}

static PyObject *graph_hits(Graph *g, PyObject *arg) {
    Block *b = find_block(g, arg);
    if (b == NULL && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(b == NULL ? 0 : b->hits);
}

static PyObject *graph_entered(Graph *g, PyObject *arg) {
    Block *b = find_block(g, arg);
    if (b == NULL && PyErr_Occurred()) return NULL;
    if (b == NULL || b->entered < 0) {
        PyErr_SetObject(PyExc_KeyError, arg);
        return NULL;
    }
    return PyLong_FromLong(b->entered);
}

static PyObject *graph_block_counts(Graph *g, PyObject *unused) {
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    for (size_t i = 0; i < g->n_blocks; i++) {
        if (g->blocks[i].hits == 0) continue;
        PyObject *key = PyLong_FromLongLong(g->blocks[i].block);
        PyObject *value = PyLong_FromLong(g->blocks[i].hits);
        int failed = key == NULL || value == NULL || PyDict_SetItem(out, key, value) < 0;
        Py_XDECREF(key);
        Py_XDECREF(value);
        if (failed) { Py_DECREF(out); return NULL; }
    }
    return out;
}

static PyObject *graph_seen_ids(Graph *g, PyObject *args) {
    PyObject *skip_seq = NULL;
    if (!PyArg_ParseTuple(args, "|O", &skip_seq)) return NULL;
    Py_ssize_t n_skip = 0;
    int64_t *skip = skip_seq == NULL ? NULL : int64s(skip_seq, &n_skip);
    if (skip_seq != NULL && skip == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n_skip; i++) {
        int32_t block = block_of(g, skip[i], 0);
        if (block >= 0) g->blocks[block].skip = 1;
    }
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i < g->n_nodes; i++) {
        if (g->nodes[i].level < 0 || g->blocks[g->nodes[i].block].skip) continue;
        PyObject *id = PyLong_FromLongLong(g->nodes[i].id);
        if (id == NULL || PyList_Append(out, id) < 0) Py_CLEAR(out);
        Py_XDECREF(id);
    }
    for (Py_ssize_t i = 0; i < n_skip; i++) {
        int32_t block = block_of(g, skip[i], 0);
        if (block >= 0) g->blocks[block].skip = 0;
    }
    PyMem_Free(skip);
    return out;
}

typedef struct {
    const char *bytes;
    Py_ssize_t size;
    PyObject *name;
    int32_t node;
} Named;

static uint64_t prefix(const char *bytes, Py_ssize_t size) {
    uint64_t key = 0;
    for (int i = 0; i < 8; i++) key = key << 8 | (i < size ? (uint8_t)bytes[i] : 0);
    return key;
}

static int by_digest(const Named *x, const Named *y) {
    Py_ssize_t common = x->size < y->size ? x->size : y->size;
    int c = memcmp(x->bytes, y->bytes, (size_t)common);
    if (c) return c;
    return (x->size > y->size) - (x->size < y->size);
}

/* ``named`` in digest order: radix-sorted by the first 8 bytes, then the rare runs that
 * share them put in order by comparing whole digests. */
static int sort_named(Named *named, Py_ssize_t width) {
    Keyed *keyed = PyMem_Malloc((size_t)(2 * width + 1) * sizeof(Keyed));
    Named *sorted = PyMem_Malloc((size_t)(width + 1) * sizeof(Named));
    if (keyed == NULL || sorted == NULL) {
        PyMem_Free(keyed);
        PyMem_Free(sorted);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < width; i++)
        keyed[i] = (Keyed){prefix(named[i].bytes, named[i].size), i};
    if (width) radix_sort(keyed, keyed + width, (size_t)width, 8);
    for (Py_ssize_t i = 0; i < width; i++) sorted[i] = named[keyed[i].item];
    for (Py_ssize_t i = 1; i < width; i++) {  /* insertion sort within equal prefixes */
        Named item = sorted[i];
        Py_ssize_t j = i;
        while (j > 0 && keyed[j - 1].key == keyed[i].key && by_digest(&sorted[j - 1], &item) > 0) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = item;
    }
    memcpy(named, sorted, (size_t)width * sizeof(Named));
    PyMem_Free(keyed);
    PyMem_Free(sorted);
    return 0;
}

static PyObject *graph_named(Graph *g, PyObject *args) {
    PyObject *id_seq, *digest_seq;
    if (!PyArg_ParseTuple(args, "OO", &id_seq, &digest_seq)) return NULL;
    Py_ssize_t n;
    int64_t *ids = int64s(id_seq, &n);
    if (ids == NULL) return NULL;
    /* the digests: a list of bytes, or one bytes object holding them one after another
     * (``packed``: a name is made only for each row kept) */
    int packed = PyBytes_Check(digest_seq);
    PyObject *digests = packed ? Py_NewRef(digest_seq)
                               : PySequence_Fast(digest_seq, "expected a sequence of digests");
    Named *named = NULL;
    Py_ssize_t width = 0;
    PyObject **levels = PyMem_Calloc((size_t)g->level + 1, sizeof(PyObject *));
    if (levels == NULL) { PyMem_Free(ids); return PyErr_NoMemory(); }
    uint64_t *keys = NULL;
    PyObject *depths = NULL, *edges = NULL;
    if (digests == NULL) goto done;
    Py_ssize_t each = packed && n ? PyBytes_GET_SIZE(digests) / n : 0;
    if (packed ? each * n != PyBytes_GET_SIZE(digests) : PySequence_Fast_GET_SIZE(digests) != n) {
        PyErr_SetString(PyExc_ValueError, "as many ids as digests are needed");
        goto done;
    }
    named = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Named));
    if (named == NULL) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < n; i++) {  /* the rows of nodes the walk reached */
        int32_t node = table_find(&g->node_table, g->nodes, sizeof(Node), ids[i]);
        if (node < 0 || g->nodes[node].level < 0 || g->nodes[node].rank >= 0) continue;
        g->nodes[node].rank = 0;  /* taken: an id listed twice counts once */
        if (packed) {
            named[width++] = (Named){PyBytes_AS_STRING(digests) + i * each, each, NULL, node};
            continue;
        }
        PyObject *item = PySequence_Fast_GET_ITEM(digests, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "digests must be bytes");
            goto done;
        }
        named[width++] = (Named){PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item), item, node};
    }
    if (sort_named(named, width) < 0) goto done;
    for (Py_ssize_t r = 0; packed && r < width; r++) {
        named[r].name = PyBytes_FromStringAndSize(named[r].bytes, named[r].size);
        if (named[r].name == NULL) goto done;
    }
#if PY_VERSION_HEX < 0x030D0000
    depths = _PyDict_NewPresized(width);  /* no resizing on the way */
#else
    depths = PyDict_New();
#endif
    if (depths == NULL) goto done;
    int64_t n_keys = 0;
    for (Py_ssize_t r = 0; r < width; r++) {
        Node *node = &g->nodes[named[r].node];
        node->rank = (int32_t)r;
        PyObject **level = &levels[node->level];  /* one int per level, not per node */
        if (*level == NULL) *level = PyLong_FromLong(node->level);
        if (*level == NULL || PyDict_SetItem(depths, named[r].name, *level) < 0) goto done;
        if (node->listed) n_keys += node->count;
    }
    keys = PyMem_Malloc((size_t)(2 * n_keys + 1) * sizeof(uint64_t));
    if (keys == NULL) { PyErr_NoMemory(); goto done; }
    n_keys = 0;
    for (Py_ssize_t r = 0; r < width; r++) {  /* links among them, as (child, parent) ranks */
        Node *node = &g->nodes[named[r].node];
        for (int32_t k = 0; k < (node->listed ? node->count : 0); k++) {
            Node *other = &g->nodes[g->adj[node->start + k]];
            if (other->level < 0 || other->rank < 0) continue;
            uint64_t child = g->ancestors ? (uint64_t)r : (uint64_t)other->rank;
            uint64_t parent = g->ancestors ? (uint64_t)other->rank : (uint64_t)r;
            keys[n_keys++] = child * (uint64_t)width + parent;
        }
    }
    int passes = 0;
    for (uint64_t most = (uint64_t)width * (uint64_t)width - 1; most > 0; most >>= 8) passes++;
    if (n_keys) radix_sort_u64(keys, keys + n_keys, (size_t)n_keys, passes);
    edges = PyTuple_New((Py_ssize_t)n_keys);
    if (edges == NULL) goto done;
    for (int64_t i = 0; i < n_keys; i++) {
        PyObject *child = named[keys[i] / (uint64_t)width].name;
        PyObject *parent = named[keys[i] % (uint64_t)width].name;
        PyObject *edge = PyTuple_Pack(2, child, parent);
        if (edge == NULL) { Py_CLEAR(edges); goto done; }
        /* two bytes objects cannot be part of a cycle: left untracked, the collector does
         * not traverse 60,000 new tuples at its next pass (Python would untrack them then) */
        PyObject_GC_UnTrack(edge);
        PyTuple_SET_ITEM(edges, (Py_ssize_t)i, edge);
    }
    PyObject_GC_UnTrack(edges);
done:
    if (named != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {  /* ranks are for this call only */
            int32_t node = table_find(&g->node_table, g->nodes, sizeof(Node), ids[i]);
            if (node >= 0) g->nodes[node].rank = -1;
        }
        for (Py_ssize_t r = 0; packed && r < width; r++) Py_XDECREF(named[r].name);
    }
    for (int32_t level = 0; level <= g->level; level++) Py_XDECREF(levels[level]);
    PyMem_Free(levels);
    PyMem_Free(ids);
    PyMem_Free(named);
    PyMem_Free(keys);
    Py_XDECREF(digests);
    if (edges == NULL) { Py_XDECREF(depths); return NULL; }
    PyObject *result = PyTuple_Pack(2, depths, edges);
    Py_DECREF(depths);
    Py_DECREF(edges);
    return result;
}

static PyObject *get_level(Graph *g, void *unused) { return PyLong_FromLong(g->level); }
static PyObject *get_low(Graph *g, void *unused) { return PyLong_FromLongLong(g->low); }
static PyObject *get_high(Graph *g, void *unused) { return PyLong_FromLongLong(g->high); }
static PyObject *get_size(Graph *g, void *unused) { return PyLong_FromSize_t(g->n_seen); }
static PyObject *get_rejoined(Graph *g, void *unused) { return PyBool_FromLong(g->rejoined); }

static int set_rejoined(Graph *g, PyObject *value, void *unused) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "rejoined cannot be deleted");
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    if (truth < 0) return -1;
    g->rejoined = truth;
    return 0;
}

static PyMethodDef graph_methods[] = {
    {"add", (PyCFunction)graph_add, METH_VARARGS, "Links (sources, destinations) of a fetch."},
    {"mark_nodes", (PyCFunction)graph_mark_nodes, METH_O, "These nodes' links are all here."},
    {"mark_blocks", (PyCFunction)graph_mark_blocks, METH_O, "These blocks' links are here."},
    {"mark_all", (PyCFunction)graph_mark_all, METH_NOARGS, "Every node's links are here."},
    {"known", (PyCFunction)graph_known, METH_O, "Whether a node's links are all here."},
    {"missing", (PyCFunction)graph_missing, METH_NOARGS, "Frontier nodes not known."},
    {"frontier", (PyCFunction)graph_frontier, METH_NOARGS, "The nodes of the current level."},
    {"advance", (PyCFunction)graph_advance, METH_NOARGS, "Go to the next level."},
    {"hits", (PyCFunction)graph_hits, METH_O, "Nodes reached in a block."},
    {"entered", (PyCFunction)graph_entered, METH_O, "Level a block was first reached at."},
    {"block_counts", (PyCFunction)graph_block_counts, METH_NOARGS, "Nodes reached per block."},
    {"seen_ids", (PyCFunction)graph_seen_ids, METH_VARARGS, "Nodes reached, by block."},
    {"named", (PyCFunction)graph_named, METH_VARARGS, "Levels and links by digest."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef graph_getset[] = {
    {"level", (getter)get_level, NULL, "The current level.", NULL},
    {"low", (getter)get_low, NULL, "The lowest id reached.", NULL},
    {"high", (getter)get_high, NULL, "The highest id reached.", NULL},
    {"size", (getter)get_size, NULL, "Nodes reached.", NULL},
    {"rejoined", (getter)get_rejoined, (setter)set_rejoined, "A node was met twice.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject GraphType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "provstore.db._lineage_graph.Graph",
    .tp_doc = "A lineage walk's nodes, links and levels (see provstore.db.lineage_graph.Graph).",
    .tp_basicsize = sizeof(Graph),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = graph_new,
    .tp_dealloc = (destructor)graph_dealloc,
    .tp_methods = graph_methods,
    .tp_getset = graph_getset,
};

static PyMethodDef module_methods[] = {
    {"ints", (PyCFunction)ints, METH_O, "The integers of a comma list, as an array('q')."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lineage_graph", "A lineage walk's graph, compiled.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__lineage_graph(void) {
    if (PyType_Ready(&GraphType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&GraphType);
    if (PyModule_AddObject(m, "Graph", (PyObject *)&GraphType) < 0) {
        Py_DECREF(&GraphType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
