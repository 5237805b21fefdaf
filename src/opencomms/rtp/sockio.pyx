# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""DatagramIO compiled (Cython, `make compiled`): the same class as sockio.py, which stays the reference and documents
the API. `send` and `receive` call sendto, epoll_wait and recvmsg themselves, with the GIL released once per batch
(Python's socket methods release and take it back at every packet, and with the event loop's thread waiting for it,
each of those hands the GIL over); a packet read costs one bytes object, and a tuple only when its source address
differs from the last one read on that slot. An armed slot's lane (see sockio.py) checks the RTP fixed header in C
and hands the payload to the jitter buffer's `put` itself: no tuple, no frame of Python per packet."""

import socket as _socket
import sys

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, EBADF, EINTR, EIO, errno
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.uio cimport iovec
from posix.unistd cimport close

cdef extern from "<errno.h>" nogil:
    int EWOULDBLOCK

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        unsigned short sa_family
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    cmsghdr* CMSG_FIRSTHDR(msghdr*)
    cmsghdr* CMSG_NXTHDR(msghdr*, cmsghdr*)
    unsigned char* CMSG_DATA(cmsghdr*)
    ssize_t sendto(int, const void*, size_t, int, const sockaddr*, socklen_t)
    ssize_t recvmsg(int, msghdr*, int)
    int SOL_SOCKET
    int MSG_DONTWAIT
    int AF_INET
    int AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct in6_addr:
        unsigned char s6_addr[16]
    struct sockaddr_in:
        unsigned short sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        unsigned short sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int, const char*, void*)
    const char* inet_ntop(int, const void*, char*, socklen_t)
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)
    uint32_t htonl(uint32_t)
    uint32_t ntohl(uint32_t)

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int)
    int epoll_ctl(int, int, int, epoll_event*)
    int epoll_wait(int, epoll_event*, int, int)
    int EPOLL_CLOEXEC
    int EPOLL_CTL_ADD
    int EPOLL_CTL_DEL
    int EPOLLIN

__all__ = ["MAX_DATAGRAM", "DatagramIO", "Pending", "PutPacket", "Received"]

MAX_DATAGRAM = 2048
cdef enum:
    _MAX = 2048
    _FIRST_CAP = 128  # datagrams the read buffer holds at first; it doubles when a receive fills it
    _CONTROL = 64
    _UNSENDABLE = -1
_SO_TIMESTAMPNS = getattr(_socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
cdef int _SCM_TIMESTAMPNS = 35 if _SO_TIMESTAMPNS is None else _SO_TIMESTAMPNS
Received = tuple
Pending = tuple
PutPacket = object


cdef struct _Addr:
    sockaddr_in6 sa  # large enough for both families
    socklen_t length


cdef inline double _monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef object _tuple_of(const _Addr* a):
    cdef char host[64]
    cdef const sockaddr_in* v4
    cdef const sockaddr_in6* v6
    if a.sa.sin6_family == AF_INET:
        v4 = <const sockaddr_in*>&a.sa
        inet_ntop(AF_INET, &v4.sin_addr, host, 64)
        return (host.decode("ascii"), ntohs(v4.sin_port))
    v6 = &a.sa
    inet_ntop(AF_INET6, &v6.sin6_addr, host, 64)
    return (host.decode("ascii"), ntohs(v6.sin6_port), ntohl(v6.sin6_flowinfo), v6.sin6_scope_id)


cdef int _pack(object peer, int family, _Addr* out) except -2:
    """`peer` as a sockaddr of `family` in `out`: 0, or -1 for a destination this socket cannot take (`out` is then
    left as it was: packets of the batch already bound for the slot's previous destination still go there)."""
    cdef _Addr packed
    if _pack_into(peer, family, &packed) != 0:
        return -1
    memcpy(out, &packed, sizeof(_Addr))
    return 0


cdef int _pack_into(object peer, int family, _Addr* out) except -2:
    cdef sockaddr_in* v4
    cdef sockaddr_in6* v6
    cdef bytes host
    cdef object port
    if not isinstance(peer, tuple) or len(peer) < 2 or not isinstance(peer[0], str) or not isinstance(peer[1], int):
        return -1
    port = peer[1]
    if not 0 <= port <= 65535:
        return -1
    try:
        host = (<str>peer[0]).split("%", 1)[0].encode("ascii")
    except UnicodeEncodeError:
        return -1
    memset(out, 0, sizeof(_Addr))
    if family == AF_INET:
        v4 = <sockaddr_in*>&out.sa
        if inet_pton(AF_INET, host, &v4.sin_addr) != 1:
            return -1
        v4.sin_family = AF_INET
        v4.sin_port = htons(<uint16_t>port)
        out.length = sizeof(sockaddr_in)
        return 0
    if family != AF_INET6:
        return -1
    v6 = &out.sa
    if inet_pton(AF_INET6, host, &v6.sin6_addr) != 1:
        return -1
    v6.sin6_family = AF_INET6
    v6.sin6_port = htons(<uint16_t>port)
    if len(peer) >= 4 and isinstance(peer[2], int) and isinstance(peer[3], int):
        v6.sin6_flowinfo = htonl(<uint32_t>(peer[2] & 0xFFFFFFFF))
        v6.sin6_scope_id = <uint32_t>(peer[3] & 0xFFFFFFFF)
    out.length = sizeof(sockaddr_in6)
    return 0


cdef class DatagramIO:
    """Non-blocking datagram sockets known by slot, sent to and read in batches (see sockio.py)."""

    cdef int _slots
    cdef int _epfd
    cdef int _cap
    cdef int _count
    cdef public bint timestamps
    cdef int* _fd
    cdef int* _family
    cdef _Addr* _peer  # per slot: the destination last packed, from the object in _peers
    cdef _Addr* _last  # per slot: the source last handed out as a tuple, the object in _sources
    cdef list _socks
    cdef list _peers
    cdef list _sources
    cdef epoll_event* _events
    cdef unsigned char* _slab
    cdef int* _slot_of
    cdef int* _length
    cdef double* _stamp
    cdef _Addr* _source
    cdef int _send_cap
    cdef int* _s_fd
    cdef const unsigned char** _s_data
    cdef size_t* _s_len
    cdef _Addr** _s_addr
    cdef int* _s_err
    # the lanes, per slot
    cdef int _armed_count  # slots armed (or holding consumed counts): 0 skips the lane pass
    cdef char* _l_armed
    cdef char* _l_quiet
    cdef char* _l_held  # the slot has a lane entry (armed, or counts not yet taken)
    cdef int* _l_pt
    cdef uint32_t* _l_ssrc
    cdef int* _l_seq
    cdef long long* _l_count
    cdef long long* _l_octets
    cdef uint32_t* _l_ts
    cdef double* _l_arrival
    cdef _Addr* _l_src
    cdef list _puts
    cdef int* _index  # per datagram left to take: its place in the read buffer
    cdef public int consumed
    cdef list _woken
    cdef list _errors

    def __cinit__(self, int slots, bint timestamps):
        self._epfd = -1
        if slots <= 0:
            raise ValueError("slots must be positive")
        self._slots = slots
        self._cap = _FIRST_CAP
        self._fd = <int*>calloc(slots, sizeof(int))
        self._family = <int*>calloc(slots, sizeof(int))
        self._peer = <_Addr*>calloc(slots, sizeof(_Addr))
        self._last = <_Addr*>calloc(slots, sizeof(_Addr))
        self._events = <epoll_event*>calloc(slots, sizeof(epoll_event))
        self._slab = <unsigned char*>malloc(<size_t>self._cap * _MAX)
        self._slot_of = <int*>calloc(self._cap, sizeof(int))
        self._length = <int*>calloc(self._cap, sizeof(int))
        self._stamp = <double*>calloc(self._cap, sizeof(double))
        self._source = <_Addr*>calloc(self._cap, sizeof(_Addr))
        self._index = <int*>calloc(self._cap, sizeof(int))
        self._l_armed = <char*>calloc(slots, 1)
        self._l_quiet = <char*>calloc(slots, 1)
        self._l_held = <char*>calloc(slots, 1)
        self._l_pt = <int*>calloc(slots, sizeof(int))
        self._l_ssrc = <uint32_t*>calloc(slots, sizeof(uint32_t))
        self._l_seq = <int*>calloc(slots, sizeof(int))
        self._l_count = <long long*>calloc(slots, sizeof(long long))
        self._l_octets = <long long*>calloc(slots, sizeof(long long))
        self._l_ts = <uint32_t*>calloc(slots, sizeof(uint32_t))
        self._l_arrival = <double*>calloc(slots, sizeof(double))
        self._l_src = <_Addr*>calloc(slots, sizeof(_Addr))
        if (not self._index or not self._l_armed or not self._l_quiet or not self._l_held or not self._l_pt
                or not self._l_ssrc or not self._l_seq or not self._l_count or not self._l_octets or not self._l_ts
                or not self._l_arrival or not self._l_src):
            raise MemoryError()
        if (not self._fd or not self._family or not self._peer or not self._last or not self._events or not self._slab
                or not self._slot_of or not self._length or not self._stamp or not self._source):
            raise MemoryError()
        for i in range(slots):
            self._fd[i] = -1
        self._epfd = epoll_create1(EPOLL_CLOEXEC)
        if self._epfd < 0:
            raise OSError(errno, "epoll_create1 failed")
        self.timestamps = timestamps and _SO_TIMESTAMPNS is not None
        self._socks = [None] * slots
        self._peers = [None] * slots
        self._sources = [None] * slots
        self._puts = [None] * slots
        self._woken = []
        self._errors = []
        self._count = 0
        self.consumed = 0

    def __dealloc__(self):
        if self._epfd >= 0:
            close(self._epfd)
        free(self._fd); free(self._family); free(self._peer); free(self._last); free(self._events)
        free(self._slab); free(self._slot_of); free(self._length); free(self._stamp); free(self._source)
        free(self._s_fd); free(self._s_data); free(self._s_len); free(self._s_addr); free(self._s_err)
        free(self._index); free(self._l_armed); free(self._l_quiet); free(self._l_held); free(self._l_pt)
        free(self._l_ssrc); free(self._l_seq); free(self._l_count); free(self._l_octets); free(self._l_ts)
        free(self._l_arrival); free(self._l_src)

    cdef void _drop_lane(self, int slot):
        if self._l_held[slot]:
            self._l_held[slot] = 0
            self._armed_count -= 1
        self._l_armed[slot] = 0
        self._l_quiet[slot] = 0
        self._l_count[slot] = 0
        self._l_octets[slot] = 0
        self._puts[slot] = None

    def register(self, int slot, sock):
        if not 0 <= slot < self._slots:
            raise IndexError(slot)
        if self.timestamps:
            sock.setsockopt(_socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        cdef int fd = sock.fileno()
        cdef epoll_event ev
        memset(&ev, 0, sizeof(ev))
        ev.events = EPOLLIN
        ev.data.u32 = <uint32_t>slot
        if epoll_ctl(self._epfd, EPOLL_CTL_ADD, fd, &ev) != 0:
            raise OSError(errno, "epoll_ctl failed")
        self._fd[slot] = fd
        self._family[slot] = sock.family
        self._socks[slot] = sock
        self._peers[slot] = None
        self._sources[slot] = None
        self._drop_lane(slot)

    def unregister(self, int slot):
        if not 0 <= slot < self._slots or self._socks[slot] is None:
            return
        cdef epoll_event ev
        epoll_ctl(self._epfd, EPOLL_CTL_DEL, self._fd[slot], &ev)  # a closed socket has left the set already
        self._fd[slot] = -1
        self._socks[slot] = None
        self._peers[slot] = None
        self._sources[slot] = None
        self._drop_lane(slot)

    cdef int _grow(self) noexcept nogil:
        """Double the read buffer (what it holds is kept): 0, or -1 when memory is short (the reads stop there)."""
        cdef int cap = self._cap * 2
        cdef unsigned char* slab = <unsigned char*>realloc(self._slab, <size_t>cap * _MAX)
        if slab == NULL:
            return -1
        self._slab = slab
        cdef int* slot_of = <int*>realloc(self._slot_of, cap * sizeof(int))
        if slot_of == NULL:
            return -1
        self._slot_of = slot_of
        cdef int* length = <int*>realloc(self._length, cap * sizeof(int))
        if length == NULL:
            return -1
        self._length = length
        cdef double* stamp = <double*>realloc(self._stamp, cap * sizeof(double))
        if stamp == NULL:
            return -1
        self._stamp = stamp
        cdef _Addr* source = <_Addr*>realloc(self._source, cap * sizeof(_Addr))
        if source == NULL:
            return -1
        self._source = source
        cdef int* index = <int*>realloc(self._index, cap * sizeof(int))
        if index == NULL:
            return -1
        self._index = index
        self._cap = cap
        return 0

    cdef int _reserve(self, int n) except -1:
        if n <= self._send_cap:
            return 0
        free(self._s_fd); free(self._s_data); free(self._s_len); free(self._s_addr); free(self._s_err)
        self._send_cap = 0
        self._s_fd = <int*>calloc(n, sizeof(int))
        self._s_data = <const unsigned char**>calloc(n, sizeof(void*))
        self._s_len = <size_t*>calloc(n, sizeof(size_t))
        self._s_addr = <_Addr**>calloc(n, sizeof(void*))
        self._s_err = <int*>calloc(n, sizeof(int))
        if not self._s_fd or not self._s_data or not self._s_len or not self._s_addr or not self._s_err:
            raise MemoryError()
        self._send_cap = n
        return 0

    def send(self, buf, list slots, list offsets, list lengths, list peers, lateness, double due):
        cdef const unsigned char[::1] data = buf
        cdef const unsigned char* base = &data[0] if data.shape[0] else NULL
        cdef Py_ssize_t n = len(slots), size = data.shape[0]
        cdef Py_ssize_t i
        cdef dict failed = None
        cdef long long[::1] late
        cdef bint measure = lateness is not None
        if measure:
            late = lateness
        if len(offsets) != n or len(lengths) != n or len(peers) != n:
            raise ValueError("slots, offsets, lengths and peers must be as long")
        self._reserve(n)
        for i in range(n):
            self._prepare(i, slots[i], offsets[i], lengths[i], peers[i], base, size)
        with nogil:
            self._sendto_all(n, &late[0] if measure else NULL, due)
        for i in range(n):
            if self._s_err[i]:
                if failed is None:
                    failed = {}
                failed[i] = self._s_err[i]
        return failed

    cdef int _prepare(self, Py_ssize_t i, int slot, Py_ssize_t offset, Py_ssize_t length, object peer,
                      const unsigned char* base, Py_ssize_t size) except -1:
        """Packet `i` of a batch into the send arrays; one that cannot go keeps `_s_fd` -1 and its error."""
        self._s_fd[i] = -1
        self._s_err[i] = 0
        if not 0 <= slot < self._slots or self._fd[slot] < 0:
            self._s_err[i] = EBADF
            return 0
        if offset < 0 or length < 0 or offset + length > size:
            raise ValueError(f"packet {i} lies outside the buffer")
        if peer is not self._peers[slot]:
            self._peers[slot] = None
            if _pack(peer, self._family[slot], &self._peer[slot]) != 0:
                self._s_err[i] = _UNSENDABLE
                return 0
            self._peers[slot] = peer
        self._s_fd[i] = self._fd[slot]
        self._s_data[i] = base + offset
        self._s_len[i] = length
        self._s_addr[i] = &self._peer[slot]
        return 0

    cdef void _sendto_all(self, Py_ssize_t n, long long* late, double due) noexcept nogil:
        """sendto every prepared packet (`_s_fd` -1: skipped), its errno into `_s_err`; with `late`, each one sent
        counts in its lateness bucket."""
        cdef Py_ssize_t i
        cdef int fd, k
        for i in range(n):
            fd = self._s_fd[i]
            if fd < 0:
                continue
            if sendto(fd, self._s_data[i], self._s_len[i], MSG_DONTWAIT,
                      <const sockaddr*>&self._s_addr[i].sa, self._s_addr[i].length) < 0:
                self._s_err[i] = errno if errno else EIO
            elif late != NULL:
                k = <int>((_monotonic() - due) * 1000.0)
                late[0 if k < 0 else (100 if k > 100 else k)] += 1

    def send_batch(self, buf, const int[::1] slots, const int[::1] offsets, const int[::1] lengths, list peers,
                   Py_ssize_t count, int[::1] errors, lateness, double due):
        cdef const unsigned char[::1] data = buf
        cdef const unsigned char* base = &data[0] if data.shape[0] else NULL
        cdef Py_ssize_t size = data.shape[0]
        cdef Py_ssize_t i
        cdef int bad = 0
        cdef long long[::1] late
        cdef bint measure = lateness is not None
        if measure:
            late = lateness
            if late.shape[0] < 101:
                raise ValueError("lateness needs 101 buckets")
        if (count < 0 or slots.shape[0] < count or offsets.shape[0] < count or lengths.shape[0] < count
                or len(peers) < count or errors.shape[0] < count):
            raise ValueError("fewer slots, offsets, lengths, peers or errors than packets")
        self._reserve(count)
        for i in range(count):
            self._prepare(i, slots[i], offsets[i], lengths[i], peers[i], base, size)
        with nogil:
            self._sendto_all(count, &late[0] if measure else NULL, due)
        for i in range(count):
            errors[i] = self._s_err[i]
            if self._s_err[i]:
                bad += 1
        return bad

    def receive(self, int rounds, double now=0.0, double offset=0.0):
        cdef int k = 0, r, j, ready, slot, fd
        cdef ssize_t got
        cdef msghdr msg
        cdef iovec iov
        cdef cmsghdr* c
        cdef unsigned char control[_CONTROL]
        cdef long long ts[2]
        cdef bint full = False
        with nogil:
            for r in range(rounds):
                ready = epoll_wait(self._epfd, self._events, self._slots, 0)
                if ready <= 0:
                    break
                for j in range(ready):
                    if k >= self._cap and self._grow() != 0:
                        full = True
                        break
                    slot = <int>self._events[j].data.u32
                    fd = self._fd[slot] if slot < self._slots else -1
                    if fd < 0:
                        continue
                    iov.iov_base = self._slab + <size_t>k * _MAX
                    iov.iov_len = _MAX
                    memset(&msg, 0, sizeof(msg))
                    msg.msg_name = &self._source[k].sa
                    msg.msg_namelen = sizeof(sockaddr_in6)
                    msg.msg_iov = &iov
                    msg.msg_iovlen = 1
                    msg.msg_control = control
                    msg.msg_controllen = _CONTROL
                    got = recvmsg(fd, &msg, MSG_DONTWAIT)
                    self._slot_of[k] = slot
                    self._stamp[k] = -1.0
                    if got < 0:
                        if errno == EAGAIN or errno == EWOULDBLOCK or errno == EINTR:
                            continue
                        self._length[k] = -1
                        k += 1
                        continue
                    self._length[k] = <int>got
                    self._source[k].length = msg.msg_namelen
                    c = CMSG_FIRSTHDR(&msg)
                    while c != NULL:
                        if c.cmsg_level == SOL_SOCKET and c.cmsg_type == _SCM_TIMESTAMPNS:
                            memcpy(ts, CMSG_DATA(c), sizeof(ts))
                            self._stamp[k] = ts[0] + ts[1] * 1e-9
                        c = CMSG_NXTHDR(&msg, c)
                    k += 1
                if full:
                    break
        self._woken.clear()
        self._errors.clear()
        self.consumed = 0
        for j in range(k):
            self._index[j] = j
        self._count = k
        if self._armed_count and k:
            self._consume(now, offset)
        return self._count

    cdef int _consume(self, double now, double offset) except -1:
        """The lane pass (see sockio.py): each datagram an armed lane takes leaves the list to take."""
        cdef int i, kept = 0, slot, n, seq, consumed = 0
        cdef const unsigned char* p
        cdef _Addr* src
        cdef _Addr* want
        cdef uint32_t ssrc, ts
        cdef double arrival
        for i in range(self._count):
            slot = self._slot_of[i]
            n = self._length[i]
            if not self._l_armed[slot] or n < 0:
                self._index[kept] = i
                kept += 1
                continue
            p = self._slab + <size_t>i * _MAX
            src = &self._source[i]
            want = &self._l_src[slot]
            if n < 12 or p[0] != 0x80 or src.length != want.length or memcmp(&src.sa, &want.sa, src.length) != 0:
                self._l_armed[slot] = 0
                self._index[kept] = i
                kept += 1
                continue
            seq = (p[2] << 8) | p[3]
            ssrc = (<uint32_t>p[8] << 24) | (<uint32_t>p[9] << 16) | (<uint32_t>p[10] << 8) | p[11]
            if (p[1] & 0x7F) != self._l_pt[slot] or ssrc != self._l_ssrc[slot] or seq != self._l_seq[slot] + 1:
                self._l_armed[slot] = 0
                self._index[kept] = i
                kept += 1
                continue
            ts = (<uint32_t>p[4] << 24) | (<uint32_t>p[5] << 16) | (<uint32_t>p[6] << 8) | p[7]
            arrival = self._stamp[i] - offset if self._stamp[i] >= 0.0 else now
            try:
                self._puts[slot](ssrc, ts, PyBytes_FromStringAndSize(<char*>p + 12, n - 12), arrival)
            except Exception as exc:  # the stream's own failure: the bank drops it
                self._l_armed[slot] = 0
                self._errors.append((slot, exc))
                continue
            consumed += 1
            self._l_seq[slot] = seq
            self._l_count[slot] += 1
            self._l_octets[slot] += n - 12
            self._l_ts[slot] = ts
            self._l_arrival[slot] = arrival
            if self._l_quiet[slot]:
                self._l_quiet[slot] = 0
                self._woken.append(slot)
        self._count = kept
        self.consumed = consumed
        return 0

    def arm(self, int slot, put, source, uint32_t ssrc, int pt, int seq, bint quiet):
        if not 0 <= slot < self._slots:
            raise IndexError(slot)
        if self._socks[slot] is None or self._sources[slot] is None or self._sources[slot] != source:
            return False
        memcpy(&self._l_src[slot], &self._last[slot], sizeof(_Addr))
        self._puts[slot] = put
        self._l_ssrc[slot] = ssrc
        self._l_pt[slot] = pt & 0x7F
        self._l_seq[slot] = seq
        self._l_quiet[slot] = quiet
        self._l_armed[slot] = 1
        if not self._l_held[slot]:
            self._l_held[slot] = 1
            self._armed_count += 1
        return True

    cdef object _take_counts(self, int slot):
        if not self._l_held[slot] or not self._l_count[slot]:
            return None
        pending = (self._l_count[slot], self._l_octets[slot], self._l_seq[slot], self._l_ts[slot],
                   self._l_arrival[slot])
        self._l_count[slot] = 0
        self._l_octets[slot] = 0
        if not self._l_armed[slot]:
            self._drop_lane(slot)
        return pending

    def lane(self, int slot):
        if not 0 <= slot < self._slots:
            raise IndexError(slot)
        return self._take_counts(slot)

    def disarm(self, int slot):
        if not 0 <= slot < self._slots:
            raise IndexError(slot)
        if not self._l_held[slot]:
            return None
        self._l_armed[slot] = 0
        if not self._l_count[slot]:
            self._drop_lane(slot)
            return None
        return self._take_counts(slot)

    def peek(self, int slot):
        if not 0 <= slot < self._slots or not self._l_held[slot] or not self._l_count[slot]:
            return (0, 0, float("-inf"))
        return (self._l_count[slot], self._l_octets[slot], self._l_arrival[slot])

    def quiet(self, int slot):
        if 0 <= slot < self._slots and self._l_armed[slot]:
            self._l_quiet[slot] = 1

    def woken(self):
        return self._woken

    def errors(self):
        return self._errors

    def due(self, int part, int parts):
        cdef int slot
        cdef list out = []
        if not self._armed_count:
            return out
        for slot in range(self._slots):
            if self._l_held[slot] and self._l_count[slot] and (slot >> 1) % parts == part:
                out.append((slot, self._take_counts(slot)))
        return out

    def take(self, int i):
        if not 0 <= i < self._count:
            raise IndexError(i)
        i = self._index[i]
        cdef int slot = self._slot_of[i], n = self._length[i]
        cdef _Addr* src = &self._source[i]
        cdef _Addr* last = &self._last[slot]
        if n < 0:
            return (slot, None, ("", 0), -1.0)
        data = PyBytes_FromStringAndSize(<char*>self._slab + <size_t>i * _MAX, n)
        source = self._sources[slot]
        if source is None or src.length != last.length or memcmp(&src.sa, &last.sa, src.length) != 0:
            source = _tuple_of(src)
            memcpy(last, src, sizeof(_Addr))
            self._sources[slot] = source
        return (slot, data, source, self._stamp[i])

    def close(self):
        if self._epfd >= 0:
            close(self._epfd)
            self._epfd = -1
