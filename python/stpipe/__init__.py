"""Read and write .stz files (losslessly compressed safetensors) from Python.

This module calls the installed libstpipe through ctypes; it has no
compiled code of its own and needs only numpy (and PyTorch for
.tensor()).

    import stpipe
    with stpipe.open("model.stz") as m:          # or load_folder("shards/")
        for name in m:                           # names, in stream order
            print(name, m.dtype(name), m.shape(name), m.file(name))
        w = m["model.embed_tokens.weight"]       # decoded now, numpy
        t = m.tensor("model.embed_tokens.weight")    # a torch tensor
        everything = m.load_all(threads=4)       # one pass, a dict
        config = m.read_file("config.json")      # any file, as bytes

    stpipe.compress("out.stz", {"w": array, "b": (bits, "BF16")})

Tensors are numpy arrays of these dtypes: F64 float64, F32 float32,
F16 float16, I8..I64 and U8..U64 the integer types, BOOL bool. BF16
comes as its raw bits in uint16, and F8_E4M3, F8_E5M2 and F8_E8M0 as
uint8 (numpy has no such types); m.dtype(name) tells which it was, and
m.tensor(name) gives torch.bfloat16 or torch.float8_*.

An opened file is a read-only Mapping from tensor name to array; each
access decodes the tensor again, into a new array. A stream of several
files (a model folder, shards) lists the tensors of all of them, and
load_folder() joins several .stz files into one such Mapping. When two
files hold a tensor of the same name, the name maps to the first in
stream order; m.load(name, file=PATH) reaches the others.

Every failure of the library raises stpipe.Error (an OSError) with
.code, the library's negative STP_E* code (stpipe.ECRC and so on), and
.message, its text.

The library is STPIPE_LIBRARY when that is set (a path), else the
libstpipe.so.0 installed beside this module (PREFIX/lib), else
libstpipe.so.0 from the system's search path.
"""

import collections.abc
import ctypes
import json
import os
import secrets
import threading

import numpy as np

__all__ = ["Error", "Stz", "open", "load_folder", "compress", "version"]

# ---- the library ----


def _load_library():
    env = os.environ.get("STPIPE_LIBRARY")
    if env:
        candidates = [env]
    else:
        here = os.path.dirname(os.path.abspath(__file__))
        beside = os.path.join(here, "..", "..", "..", "libstpipe.so.0")
        candidates = [beside] if os.path.exists(beside) else []
        candidates.append("libstpipe.so.0")
    failures = []
    for c in candidates:
        try:
            return ctypes.CDLL(c)
        except OSError as e:
            failures.append("%s (%s)" % (c, e))
    raise ImportError("stpipe: cannot load libstpipe: tried "
                      + "; ".join(failures)
                      + (" (STPIPE_LIBRARY is set)" if env else
                         "; install libstpipe or set STPIPE_LIBRARY to"
                         " the path of libstpipe.so.0"))


_lib = _load_library()


class _Stz(ctypes.Structure):
    """The opaque stp_stz."""


class _TensorDesc(ctypes.Structure):
    _fields_ = [("file", ctypes.c_char_p),
                ("name", ctypes.c_char_p),
                ("dtype", ctypes.c_char_p),
                ("ndim", ctypes.c_uint),
                ("shape", ctypes.POINTER(ctypes.c_uint64)),
                ("nbytes", ctypes.c_uint64)]


_BEGIN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p,
                          ctypes.POINTER(_TensorDesc),
                          ctypes.POINTER(ctypes.c_void_p))
_END = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p,
                        ctypes.POINTER(_TensorDesc), ctypes.c_void_p)


class _FileDesc(ctypes.Structure):
    """struct stp_file_desc."""
    _fields_ = [("path", ctypes.c_char_p),
                ("safetensors", ctypes.c_int),
                ("size", ctypes.c_uint64)]


class _LoadCb(ctypes.Structure):
    _fields_ = [("begin", _BEGIN),
                ("end", _END),
                ("ctx", ctypes.c_void_p)]


class _TensorIn(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p),
                ("dtype", ctypes.c_char_p),
                ("ndim", ctypes.c_uint),
                ("shape", ctypes.POINTER(ctypes.c_uint64)),
                ("data", ctypes.c_void_p),
                ("nbytes", ctypes.c_uint64)]


class _CompressOpts(ctypes.Structure):
    _fields_ = [("threads", ctypes.c_uint),
                ("model", ctypes.c_char_p)]


def _proto(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_P_STZ = ctypes.POINTER(_Stz)
_stp_version = _proto("stp_version", ctypes.c_char_p)
_stp_strerror = _proto("stp_strerror", ctypes.c_char_p, ctypes.c_int)
_stp_stz_open = _proto("stp_stz_open", ctypes.c_int,
                       ctypes.POINTER(_P_STZ), ctypes.c_char_p)
_stp_stz_close = _proto("stp_stz_close", None, _P_STZ)
_stp_stz_count = _proto("stp_stz_count", ctypes.c_size_t, _P_STZ)
_stp_stz_tensor = _proto("stp_stz_tensor", ctypes.POINTER(_TensorDesc),
                         _P_STZ, ctypes.c_size_t)
_stp_stz_load = _proto("stp_stz_load", ctypes.c_int, _P_STZ,
                       ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                       ctypes.c_uint)
_stp_stz_load_all = _proto("stp_stz_load_all", ctypes.c_long, _P_STZ,
                           ctypes.POINTER(_LoadCb), ctypes.c_uint)
_stp_stz_file_count = _proto("stp_stz_file_count", ctypes.c_size_t, _P_STZ)
_stp_stz_file = _proto("stp_stz_file", ctypes.POINTER(_FileDesc),
                       _P_STZ, ctypes.c_size_t)
_stp_stz_read_file = _proto("stp_stz_read_file", ctypes.c_int64, _P_STZ,
                            ctypes.c_size_t, ctypes.c_void_p,
                            ctypes.c_size_t, ctypes.c_uint)
_stp_compress_tensors = _proto("stp_compress_tensors", ctypes.c_int,
                               ctypes.c_int, ctypes.c_char_p,
                               ctypes.POINTER(_TensorIn), ctypes.c_size_t,
                               ctypes.c_char_p,
                               ctypes.POINTER(_CompressOpts))

# ---- errors ----

# The codes of STP_ERRORS in lib/stpipe.h, in its order (the header only
# ever adds codes at the end; t/python.bats checks these against it).
EIO = -1
ENOMEM = -2
EEMPTY = -3
EMAGIC = -4
EVERSION = -5
ERESERVED = -6
ECRC = -7
ETRUNCATED = -8
ETOOBIG = -9
EFRAME = -10
EORDER = -11
ETOTALS = -12
ETRAILING = -13
EHEADER = -14
EJSON = -15
ERANGE = -16
EOVERLAP = -17
ESIZE = -18
EDTYPE = -19
EPATH = -20
EARCHIVE = -21
EUNSUPPORTED = -22
ECORRUPT = -23
ECHECKSUM = -24
EUNDECODED = -25
EEXIST = -26
EMANY = -27
ENODEVICE = -28
__all__ += ["EIO", "ENOMEM", "EEMPTY", "EMAGIC", "EVERSION", "ERESERVED",
            "ECRC", "ETRUNCATED", "ETOOBIG", "EFRAME", "EORDER", "ETOTALS",
            "ETRAILING", "EHEADER", "EJSON", "ERANGE", "EOVERLAP", "ESIZE",
            "EDTYPE", "EPATH", "EARCHIVE", "EUNSUPPORTED", "ECORRUPT",
            "ECHECKSUM", "EUNDECODED", "EEXIST", "EMANY", "ENODEVICE"]


def _strerror(code):
    return _stp_strerror(code).decode("utf-8", "replace")


class Error(OSError):
    """A failure the library reported.

    .code is its negative STP_E* code (compare with stpipe.ECRC and so
    on), .message the library's text for it, .where what it was about
    (a path, a tensor) or None.
    """

    def __init__(self, code, where=None):
        self.code = code
        self.message = _strerror(code)
        self.where = where
        super().__init__("%s: %s" % (where, self.message) if where
                         else self.message)

    def __reduce__(self):
        return (type(self), (self.code, self.where))


def _check(rc, where):
    if rc < 0:
        raise Error(rc, where)
    return rc


def version():
    """The library's version, "MAJOR.MINOR.PATCH"."""
    return _stp_version().decode("ascii")


# ---- dtypes ----

# safetensors dtype: (numpy dtype of the arrays returned, its width).
# Little-endian explicitly: the data is, whatever the host.
_NUMPY = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F8_E4M3": np.dtype("u1"), "F8_E5M2": np.dtype("u1"),
    "F8_E8M0": np.dtype("u1"),
    "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"), "U16": np.dtype("<u2"), "U32": np.dtype("<u4"),
    "U64": np.dtype("<u8"),
    "BOOL": np.dtype("?"),
}

# numpy (kind, itemsize) -> safetensors dtype, for compress().
_FROM_NUMPY = {
    ("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16",
    ("i", 1): "I8", ("i", 2): "I16", ("i", 4): "I32", ("i", 8): "I64",
    ("u", 1): "U8", ("u", 2): "U16", ("u", 4): "U32", ("u", 8): "U64",
    ("b", 1): "BOOL",
}

# ml_dtypes' names, so that its arrays need no explicit dtype.
_FROM_NUMPY_NAME = {"bfloat16": "BF16", "float8_e4m3fn": "F8_E4M3",
                    "float8_e5m2": "F8_E5M2", "float8_e8m0fnu": "F8_E8M0"}

_TORCH_NAME = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
               "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu"}


def _decode(b):
    return b.decode("utf-8", "surrogateescape")


def _encode(s):
    return s.encode("utf-8", "surrogateescape")


def _threads(threads):
    if isinstance(threads, bool) or not isinstance(threads, int) \
            or threads < 0 or threads > 0xFFFFFFFF:
        raise ValueError("stpipe: threads must be an int >= 0 (0: one per"
                         " CPU), not %r" % (threads,))
    return threads


# ---- reading ----


class _Entry:
    """One tensor of a stream, copied out of its struct stp_tensor_desc."""

    __slots__ = ("handle", "index", "file", "name", "dtype", "shape",
                 "nbytes")

    def __init__(self, handle, index, d):
        self.handle = handle
        self.index = index
        self.file = _decode(d.file)
        self.name = _decode(d.name)
        self.dtype = _decode(d.dtype)
        self.shape = tuple(int(d.shape[k]) for k in range(d.ndim))
        self.nbytes = int(d.nbytes)

    def where(self):
        return "%s: %s: %s" % (self.handle.path, self.file, self.name)

    def view(self, raw):
        """raw (uint8, nbytes) as the tensor's array."""
        return raw.view(_NUMPY[self.dtype]).reshape(self.shape)


class _Handle:
    """One stp_stz handle, its tensors, and a lock: a handle is used by
    one thread at a time."""

    def __init__(self, path):
        self.path = path
        self.ptr = None
        self.lock = threading.Lock()
        ptr = _P_STZ()
        _check(_stp_stz_open(ctypes.byref(ptr), os.fsencode(path)), path)
        self.ptr = ptr
        self.close_fn = _stp_stz_close
        n = _stp_stz_count(ptr)
        self.entries = []
        for i in range(n):
            d = _stp_stz_tensor(ptr, i)
            if not d:
                raise Error(ERANGE, "%s: tensor %d of %d" % (path, i, n))
            e = _Entry(self, i, d.contents)
            width = _NUMPY.get(e.dtype)
            if width is None:
                raise Error(EDTYPE, e.where() + ": " + e.dtype)
            count = 1
            for x in e.shape:
                count *= x
            if count * width.itemsize != e.nbytes:
                raise Error(ESIZE, e.where())
            self.entries.append(e)
        self.files = []
        for i in range(_stp_stz_file_count(ptr)):
            f = _stp_stz_file(ptr, i).contents
            self.files.append((i, _decode(f.path), f.size))

    def read_file(self, i, size, path, threads):
        if size == 2**64 - 1:
            raise Error(EUNSUPPORTED, path + ": size not recorded")
        raw = np.empty(size, np.uint8)
        with self.lock:
            self._live()
            n = _stp_stz_read_file(self.ptr, i, raw.ctypes.data, size,
                                   threads)
        _check(n if n < 0 else 0, path)
        return raw[:n].tobytes()

    def close(self):
        with self.lock:
            if self.ptr:
                self.close_fn(self.ptr)
                self.ptr = None

    def __del__(self):
        if getattr(self, "ptr", None):
            self.close_fn(self.ptr)
            self.ptr = None

    def _live(self):
        if not self.ptr:
            raise ValueError("stpipe: %s is closed" % self.path)

    def load(self, e, threads):
        raw = np.empty(e.nbytes, np.uint8)
        with self.lock:
            self._live()
            _check(_stp_stz_load(self.ptr, e.index, raw.ctypes.data,
                                 raw.nbytes, threads), e.where())
        return e.view(raw)

    def load_all(self, wanted, threads):
        """Decodes the whole stream once; returns {entry index: array} for
        the entries whose index is in wanted."""
        out = {}
        at = {}
        ended = set()
        state = {"next": 0, "error": None}

        def fail(exc):
            state["error"] = exc
            return ENOMEM if isinstance(exc, MemoryError) else EIO

        def begin(ctx, t, buf):
            try:
                i = state["next"]
                state["next"] = i + 1
                d = t.contents
                if i >= len(self.entries) \
                        or self.entries[i].file != _decode(d.file) \
                        or self.entries[i].name != _decode(d.name) \
                        or self.entries[i].nbytes != d.nbytes:
                    raise Error(ECORRUPT, "%s: tensor %d (%s) is not the"
                                " one its index lists" % (
                                    self.path, i, _decode(d.name)))
                if i not in wanted:
                    buf[0] = None
                    return 0
                raw = np.empty(max(d.nbytes, 1), np.uint8)[:d.nbytes]
                out[i] = raw
                at[raw.ctypes.data] = i
                buf[0] = raw.ctypes.data
                return 0
            except BaseException as exc:
                return fail(exc)

        def end(ctx, t, buf):
            try:
                ended.add(at[buf])
                return 0
            except BaseException as exc:
                return fail(exc)

        cb = _LoadCb(_BEGIN(begin), _END(end), None)
        with self.lock:
            self._live()
            rc = _stp_stz_load_all(self.ptr, ctypes.byref(cb), threads)
        if state["error"] is not None:
            raise state["error"]
        _check(rc, self.path)
        missing = [i for i in wanted if i not in ended]
        if missing:
            raise Error(ECORRUPT, "%s: the stream does not hold tensor %s"
                        % (self.path, self.entries[missing[0]].name))
        return {i: self.entries[i].view(raw) for i, raw in out.items()}


class Stz(collections.abc.Mapping):
    """Tensors of one or more .stz files: a read-only Mapping from name to
    numpy array, each decoded when accessed. Made by open() and
    load_folder(); close it (or use it in a with block) to free the
    handles. After close(), names, dtypes and shapes stay readable and
    decoding raises ValueError."""

    def __init__(self, paths, threads=1, label=None):
        self._threads = _threads(threads)
        self._label = label if label is not None else paths[0]
        self._handles = []
        try:
            for p in paths:
                self._handles.append(_Handle(p))
        except BaseException:
            self.close()
            raise
        self._entries = [e for h in self._handles for e in h.entries]
        self._first = {}
        for e in self._entries:
            self._first.setdefault(e.name, e)

    # -- Mapping --

    def __getitem__(self, name):
        return self.load(name)

    def __iter__(self):
        return iter(self._first)

    def __len__(self):
        return len(self._first)

    def __contains__(self, name):
        return name in self._first

    # -- the tensors --

    def _entry(self, name, file=None):
        if file is None:
            e = self._first.get(name)
            if e is not None:
                return e
        else:
            for e in self._entries:
                if e.name == name and e.file == file:
                    return e
        raise KeyError(name if file is None else (file, name))

    def load(self, name, file=None, threads=None):
        """Decodes tensor name (of file, a path in the stream, when given:
        for names that more than one file holds) into a new numpy array.
        threads: as for open(); None uses open()'s."""
        e = self._entry(name, file)
        return e.handle.load(e, self._threads if threads is None
                             else _threads(threads))

    def dtype(self, name):
        """The tensor's safetensors dtype, e.g. "BF16"."""
        return self._entry(name).dtype

    def shape(self, name):
        """The tensor's shape, a tuple of ints (() for a scalar)."""
        return self._entry(name).shape

    def nbytes(self, name):
        """The size of the tensor's data in bytes."""
        return self._entry(name).nbytes

    def file(self, name):
        """The path, inside the stream, of the file holding the tensor."""
        return self._entry(name).file

    @property
    def files(self):
        """Paths of every file of the stream(s) in stream order: shards,
        config.json, tokenizer files alike."""
        return [p for h in self._handles for (_, p, _) in h.files]

    def read_file(self, path, threads=None):
        """The bytes of file path of the stream (config.json, say), whole,
        checked against the original's length and CRC-32."""
        for h in self._handles:
            for i, p, size in h.files:
                if p == path:
                    return h.read_file(i, size, path,
                                       self._threads if threads is None
                                       else _threads(threads))
        raise KeyError(path)

    def tensor(self, name, file=None, threads=None):
        """The tensor as a torch tensor of its own dtype (torch.bfloat16,
        torch.float8_e4m3fn, ...), sharing memory with a new array.
        Needs PyTorch; ImportError without it."""
        try:
            import torch
        except ImportError as exc:
            raise ImportError("stpipe: tensor() needs PyTorch, which does"
                              " not import (%s); m[name] gives the tensor"
                              " as a numpy array" % exc) from exc
        e = self._entry(name, file)
        arr = self.load(name, file, threads)
        tname = _TORCH_NAME.get(e.dtype)
        if tname is None:
            return torch.from_numpy(arr)
        tdtype = getattr(torch, tname, None)
        if tdtype is None:
            raise TypeError("stpipe: this PyTorch (%s) has no torch.%s for"
                            " %s %s; m[name] gives its raw bits" % (
                                torch.__version__, tname, e.dtype, name))
        if arr.dtype.itemsize == 2:
            arr = arr.view(np.int16)
        return torch.from_numpy(arr).view(tdtype)

    def load_all(self, threads=None):
        """Decodes every tensor in one pass over each file, checking the
        files' checksums too, and returns a dict name -> array (the first
        of duplicate names). threads: None uses open()'s."""
        threads = self._threads if threads is None else _threads(threads)
        out = {}
        for h in self._handles:
            wanted = {e.index for e in h.entries
                      if self._first[e.name] is e}
            got = h.load_all(wanted, threads)
            for i in sorted(got):
                out[h.entries[i].name] = got[i]
        return {name: out[name] for name in self._first}

    # -- life --

    def close(self):
        """Frees the library's handles; decoding raises ValueError after."""
        for h in self._handles:
            h.close()

    @property
    def closed(self):
        return not any(h.ptr for h in self._handles)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        for h in getattr(self, "_handles", ()):
            h.close()

    def __repr__(self):
        return "<stpipe.Stz %r: %d file%s, %d tensor%s%s>" % (
            self._label, len(self.files), "" if len(self.files) == 1
            else "s", len(self), "" if len(self) == 1 else "s",
            ", closed" if self.closed else "")


def open(path, threads=1):
    """Opens a .stz file (one safetensors file, or a stream of several: a
    model folder, shards) and returns its tensors as an Stz Mapping.
    threads: how many threads each decode may use (0: one per CPU); the
    result never depends on it. Raises stpipe.Error."""
    path = os.fspath(path)
    return Stz([path], threads)


def load_folder(path, threads=1):
    """A sharded model as one Stz Mapping: path is a folder whose *.stz
    files (opened in sorted order; anything else there, such as an
    uncompressed model.safetensors.index.json, is ignored) hold the
    shards, or a .stz file holding a whole folder, as open() gives it."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return Stz([path], threads)
    names = sorted(n for n in os.listdir(path) if n.endswith(".stz"))
    paths = [os.path.join(path, n) for n in names
             if os.path.isfile(os.path.join(path, n))]
    if not paths:
        raise Error(EEMPTY, "%s: no .stz file in this folder" % path)
    return Stz(paths, threads, label=path)


# ---- compressing ----


def _tensor_in(name, value, keep):
    if isinstance(value, tuple):
        if len(value) != 2 or not isinstance(value[1], str):
            raise TypeError("stpipe: tensor %r: a pair must be (array,"
                            " dtype string)" % name)
        arr, dtype = np.asarray(value[0]), value[1]
        want = _NUMPY.get(dtype)
        if want is None:
            raise Error(EDTYPE, "tensor %s: %s" % (name, dtype))
        if arr.dtype.kind not in "biuf" \
                or arr.dtype.itemsize != want.itemsize:
            raise TypeError("stpipe: tensor %r: %s needs an array of %d-byte"
                            " elements, not %s" % (name, dtype,
                                                   want.itemsize, arr.dtype))
    else:
        arr = np.asarray(value)
        dtype = _FROM_NUMPY_NAME.get(arr.dtype.name) \
            or _FROM_NUMPY.get((arr.dtype.kind, arr.dtype.itemsize))
        if dtype is None:
            raise TypeError("stpipe: tensor %r: numpy dtype %s has no"
                            " safetensors dtype; give (array, dtype)"
                            % (name, arr.dtype))
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")   # ascontiguousarray makes 0-d 1-d
    shape = (ctypes.c_uint64 * max(arr.ndim, 1))(*arr.shape)
    keep.append((arr, shape))
    return _TensorIn(_encode(name), dtype.encode("ascii"), arr.ndim,
                     shape if arr.ndim else None,
                     arr.ctypes.data if arr.nbytes else None, arr.nbytes)


def compress(path_out, tensors, metadata=None, file_name="model.safetensors",
             model=None, threads=1):
    """Writes path_out, a .stz holding one safetensors file called
    file_name made of tensors, in their order.

    tensors maps name -> numpy array (F64, F32, F16, integer and bool
    arrays; ml_dtypes' bfloat16 and float8 too) or -> (array, dtype) for
    a dtype numpy lacks, its raw bits given as uint16 ("BF16") or uint8
    ("F8_E4M3", "F8_E5M2", "F8_E8M0"). metadata: a dict of strings (or
    its JSON text) for "__metadata__". model: the exponent model, as
    stpipe compress -m ("order0" when None, "ctx", "adaptive0", "lstm",
    "auto"). The file is written under a temporary name and renamed into
    place when complete; an existing path_out is replaced. Raises
    stpipe.Error, or TypeError for an array it cannot store.
    """
    path_out = os.fspath(path_out)
    keep = []
    t = [_tensor_in(name, value, keep) for name, value in tensors.items()]
    arr = (_TensorIn * max(len(t), 1))(*t)
    if metadata is not None and not isinstance(metadata, str):
        metadata = json.dumps(metadata, ensure_ascii=False)
    opts = _CompressOpts(_threads(threads),
                         model.encode("ascii") if model is not None
                         else None)
    d, base = os.path.split(path_out)
    tmp = os.path.join(d, ".%s.%s.tmp" % (base, secrets.token_hex(6)))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                 0o666)
    try:
        try:
            _check(_stp_compress_tensors(
                fd, _encode(file_name), arr, len(t),
                _encode(metadata) if metadata is not None else None,
                ctypes.byref(opts)), path_out)
        finally:
            os.close(fd)
        os.replace(tmp, path_out)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
